// File: admission.h
//
// Bounds on the queries routerd lets in from its clients, beyond the batch queue's own
// (batching.max_queued), checked when a query is taken in and before its prediction, the costly
// part of intake, so that refusing one costs little (query_intake.h):
//   - per tenant: batch-mode queries of one Query.tenant admitted and not yet answered
//     (limits.max_queued_per_tenant), so one tenant cannot fill the queue for everyone;
//   - per connection: queries of any mode from one client connection admitted and not yet
//     answered (limits.max_queries_per_connection); connections are told apart by their peer
//     address (ip:port), so every client behind one proxy connection shares it.
// A bound of 0 is no bound. An admitted query holds an AdmissionTicket, which its task keeps until
// it is destroyed (once its answer was delivered); destroying the ticket gives the place back.
//
// Thread-safety: all methods may be called concurrently; one mutex, held for a hash lookup.
// Ownership: tickets point into their Admission, which must outlive them.
// Errors: Admit: UNAVAILABLE (retryable) naming the bound that was reached.
// Memory and cost: one map entry per tenant and per connection with queries in flight (entries go
// at zero); Admit and a ticket's release are O(1).

#ifndef ROUTER_SERVER_ADMISSION_H_
#define ROUTER_SERVER_ADMISSION_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace router::server {

class Admission;

// A query's place under the bounds; move-only; releases it when destroyed. A default ticket holds
// nothing.
class AdmissionTicket {
 public:
  AdmissionTicket() = default;
  AdmissionTicket(AdmissionTicket&& other) noexcept { *this = std::move(other); }
  AdmissionTicket& operator=(AdmissionTicket&& other) noexcept;
  AdmissionTicket(const AdmissionTicket&) = delete;
  AdmissionTicket& operator=(const AdmissionTicket&) = delete;
  ~AdmissionTicket() { Release(); }

 private:
  friend class Admission;
  using Entry = std::pair<const std::string, int64_t>;
  void Release();

  Admission* admission_ = nullptr;
  Entry* tenant_ = nullptr;      // null: not counted per tenant
  Entry* connection_ = nullptr;  // null: not counted per connection
};

class Admission {
 public:
  struct Bounds {
    int64_t per_tenant = 0;      // 0 = none
    int64_t per_connection = 0;  // 0 = none
  };

  Admission() = default;
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // Admits one query of `tenant` (counted only when `queued`: decided in batch mode) from
  // `connection`; refuses it when a bound of `bounds` is reached.
  absl::StatusOr<AdmissionTicket> Admit(absl::string_view tenant, bool queued,
                                        absl::string_view connection, const Bounds& bounds)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Queries in flight, for tests and the retry hint.
  int64_t TenantCount(absl::string_view tenant) ABSL_LOCKS_EXCLUDED(mu_);
  int64_t ConnectionCount(absl::string_view connection) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class AdmissionTicket;
  void Release(AdmissionTicket::Entry* tenant, AdmissionTicket::Entry* connection)
      ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  // Node maps: tickets point at their entries, which stay put until their count is 0.
  absl::node_hash_map<std::string, int64_t> tenants_ ABSL_GUARDED_BY(mu_);
  absl::node_hash_map<std::string, int64_t> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace router::server

#endif  // ROUTER_SERVER_ADMISSION_H_
