#include "server/outcome_context.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace router::server {
namespace {

constexpr char kSeparator = '~';
constexpr int64_t kMillionths = 1'000'000;

// A decimal of at most `max_digits` digits (no sign, no spaces), or nullopt.
std::optional<int64_t> Decimal(absl::string_view text, size_t max_digits) {
  if (text.empty() || text.size() > max_digits ||
      text.find_first_not_of("0123456789") != absl::string_view::npos) {
    return std::nullopt;
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) return std::nullopt;
  return value;
}

}  // namespace

std::string PublicAssignmentId(absl::string_view ledger_id, const OutcomeContext& context) {
  const double prior = std::clamp(context.prior_quality, 0.0, 1.0);
  const int64_t millionths =
      std::isfinite(prior) ? std::llround(prior * static_cast<double>(kMillionths)) : 0;
  return absl::StrCat(ledger_id, absl::string_view(&kSeparator, 1), std::max(0, context.cluster),
                      absl::string_view(&kSeparator, 1), millionths,
                      absl::string_view(&kSeparator, 1), context.model);
}

ParsedAssignmentId ParseAssignmentId(absl::string_view id) {
  ParsedAssignmentId out;
  const size_t first = id.find(kSeparator);
  out.ledger_id = id.substr(0, first);
  if (first == absl::string_view::npos) return out;
  absl::string_view rest = id.substr(first + 1);
  const size_t second = rest.find(kSeparator);
  if (second == absl::string_view::npos) return out;
  const absl::string_view cluster = rest.substr(0, second);
  rest = rest.substr(second + 1);
  const size_t third = rest.find(kSeparator);
  if (third == absl::string_view::npos) return out;
  const absl::string_view prior = rest.substr(0, third);
  const absl::string_view model = rest.substr(third + 1);
  // Clusters are ints; a prior is at most 1.000000.
  const std::optional<int64_t> c = Decimal(cluster, 9);
  const std::optional<int64_t> q = Decimal(prior, 7);
  if (!c.has_value() || !q.has_value() || *q > kMillionths || model.empty()) return out;
  out.context = OutcomeContext{std::string(model), static_cast<int>(*c),
                               static_cast<double>(*q) / static_cast<double>(kMillionths)};
  return out;
}

}  // namespace router::server
