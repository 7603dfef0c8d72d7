// File: batch_queue.h
//
// The queue that forms batches from arriving queries, bounded by size and by time, as TF Serving's
// and Triton's batchers are. It is passive: it never sleeps or reads a clock; the caller passes
// `now` and waits on its own (batch_scheduler.h waits until NextClose()). So tests drive it with
// fake time.
//
// A batch closes at the earliest of
//   (a) the queue holding max_batch_size items             (dispatch at once, as Triton does);
//   (b) oldest arrival + max_batch_delay;
//   (c) earliest member deadline - solve_margin            (so that member is answered in time).
// TakeBatch returns the oldest min(size, max_batch_size) items once one of these holds; items keep
// their arrival order. A full queue refuses new items (the caller answers UNAVAILABLE, retryable),
// so memory is bounded by max_queued items.
//
// Latency bound for an item that is not refused, with a caller that waits until NextClose():
//   wait <= min(max_batch_delay, deadline - solve_margin - arrival)
//          + (items ahead of it / max_batch_size) * (batch solve time).
//
// Thread-safety: none; the owner serializes calls (batch_scheduler.h holds a mutex around it).
//
// Errors: Create: INVALID_ARGUMENT naming the option. Add: UNAVAILABLE when full or closed.

#ifndef ROUTER_CORE_SERVING_BATCH_QUEUE_H_
#define ROUTER_CORE_SERVING_BATCH_QUEUE_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace router::core {

struct BatchQueueOptions {
  // Largest batch, >= 1.
  int64_t max_batch_size = 64;
  // Longest an item waits for company, >= 0. Small by default, as TF Serving advises.
  absl::Duration max_batch_delay = absl::Milliseconds(5);
  // Items queued at most (waiting, not yet taken), >= max_batch_size.
  int64_t max_queued = 10'000;
  // Time reserved before a member's deadline for solving and answering, >= 0.
  absl::Duration solve_margin = absl::Milliseconds(5);
};

absl::Status ValidateBatchQueueOptions(const BatchQueueOptions& o);

template <typename T>
class BatchQueue {
 public:
  static absl::StatusOr<BatchQueue> Create(const BatchQueueOptions& options) {
    if (absl::Status s = ValidateBatchQueueOptions(options); !s.ok()) return s;
    return BatchQueue(options);
  }

  // Applies new options to the queue as it stands (items already queued stay).
  absl::Status SetOptions(const BatchQueueOptions& options) {
    if (absl::Status s = ValidateBatchQueueOptions(options); !s.ok()) return s;
    options_ = options;
    return absl::OkStatus();
  }
  const BatchQueueOptions& options() const { return options_; }

  // `deadline` = absl::InfiniteFuture() when the caller set none. Moves from `item` only on
  // success, so a refused item stays with the caller.
  absl::Status Add(T&& item, absl::Time arrival, absl::Time deadline) {
    if (closed_) return absl::UnavailableError("the router is shutting down");
    if (static_cast<int64_t>(items_.size()) >= options_.max_queued) {
      return absl::UnavailableError(absl::StrCat("queue full (", options_.max_queued,
                                                 " queries waiting); retry with backoff"));
    }
    items_.push_back(Entry{std::move(item), arrival, deadline});
    earliest_deadline_ = std::min(earliest_deadline_, deadline);
    return absl::OkStatus();
  }

  // When the next batch closes: InfiniteFuture if empty, InfinitePast if it is already due by size.
  // O(1), so that the caller can ask after every Add whether the close moved earlier.
  absl::Time NextClose() const {
    if (items_.empty()) return absl::InfiniteFuture();
    if (static_cast<int64_t>(items_.size()) >= options_.max_batch_size) return absl::InfinitePast();
    return std::min(items_.front().arrival + options_.max_batch_delay,
                    earliest_deadline_ - options_.solve_margin);
  }

  // The next batch if it is due at `now` (or `force`, for draining), else empty.
  std::vector<T> TakeBatch(absl::Time now, bool force = false) {
    std::vector<T> batch;
    if (items_.empty() || (!force && now < NextClose())) return batch;
    const size_t n = std::min<size_t>(items_.size(), static_cast<size_t>(options_.max_batch_size));
    batch.reserve(n);
    for (size_t k = 0; k < n; ++k) {
      batch.push_back(std::move(items_.front().item));
      items_.pop_front();
    }
    RecomputeEarliestDeadline();
    return batch;
  }

  // Refuses every later Add with UNAVAILABLE; queued items stay until taken.
  void Close() { closed_ = true; }
  bool closed() const { return closed_; }
  int64_t size() const { return static_cast<int64_t>(items_.size()); }

 private:
  struct Entry {
    T item;
    absl::Time arrival;
    absl::Time deadline;
  };
  explicit BatchQueue(const BatchQueueOptions& options) : options_(options) {}

  void RecomputeEarliestDeadline() {
    earliest_deadline_ = absl::InfiniteFuture();
    for (const Entry& e : items_) earliest_deadline_ = std::min(earliest_deadline_, e.deadline);
  }

  BatchQueueOptions options_;
  std::deque<Entry> items_;
  absl::Time earliest_deadline_ = absl::InfiniteFuture();  // of items_
  bool closed_ = false;
};

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_BATCH_QUEUE_H_
