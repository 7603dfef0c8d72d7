#include "server/admission.h"

#include "absl/strings/str_cat.h"

namespace router::server {

AdmissionTicket& AdmissionTicket::operator=(AdmissionTicket&& other) noexcept {
  if (this != &other) {
    Release();
    admission_ = std::exchange(other.admission_, nullptr);
    tenant_ = std::exchange(other.tenant_, nullptr);
    connection_ = std::exchange(other.connection_, nullptr);
  }
  return *this;
}

void AdmissionTicket::Release() {
  if (admission_ == nullptr) return;
  admission_->Release(tenant_, connection_);
  admission_ = nullptr;
  tenant_ = nullptr;
  connection_ = nullptr;
}

absl::StatusOr<AdmissionTicket> Admission::Admit(absl::string_view tenant, bool queued,
                                                 absl::string_view connection,
                                                 const Bounds& bounds) {
  const bool per_tenant = queued && bounds.per_tenant > 0;
  const bool per_connection = bounds.per_connection > 0;
  AdmissionTicket ticket;
  if (!per_tenant && !per_connection) return ticket;
  absl::MutexLock lock(&mu_);
  if (per_tenant) {
    auto it = tenants_.find(tenant);
    if (it != tenants_.end() && it->second >= bounds.per_tenant) {
      return absl::UnavailableError(absl::StrCat(
          "tenant '", tenant, "' has ", it->second,
          " queries waiting for a batch (limits.max_queued_per_tenant)"));
    }
  }
  if (per_connection) {
    auto it = connections_.find(connection);
    if (it != connections_.end() && it->second >= bounds.per_connection) {
      return absl::UnavailableError(absl::StrCat(
          "this connection has ", it->second,
          " queries in flight (limits.max_queries_per_connection)"));
    }
  }
  ticket.admission_ = this;
  if (per_tenant) {
    ticket.tenant_ = &*tenants_.try_emplace(std::string(tenant), 0).first;
    ++ticket.tenant_->second;
  }
  if (per_connection) {
    ticket.connection_ = &*connections_.try_emplace(std::string(connection), 0).first;
    ++ticket.connection_->second;
  }
  return ticket;
}

void Admission::Release(AdmissionTicket::Entry* tenant, AdmissionTicket::Entry* connection) {
  absl::MutexLock lock(&mu_);
  if (tenant != nullptr && --tenant->second == 0) tenants_.erase(tenant->first);
  if (connection != nullptr && --connection->second == 0) connections_.erase(connection->first);
}

int64_t Admission::TenantCount(absl::string_view tenant) {
  absl::MutexLock lock(&mu_);
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second;
}

int64_t Admission::ConnectionCount(absl::string_view connection) {
  absl::MutexLock lock(&mu_);
  auto it = connections_.find(connection);
  return it == connections_.end() ? 0 : it->second;
}

}  // namespace router::server
