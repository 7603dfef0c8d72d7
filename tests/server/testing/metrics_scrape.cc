#include "tests/server/testing/metrics_scrape.h"

namespace router::server::testing {

double MetricValue(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

}  // namespace router::server::testing
