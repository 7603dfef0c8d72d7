// File: metrics_scrape.h
//
// One series' value out of a routerd's /metrics text (fetch it with http_get.h's HttpGet, which
// this header brings along).
//
// Thread-safety: pure functions.

#ifndef ROUTER_TESTS_SERVER_TESTING_METRICS_SCRAPE_H_
#define ROUTER_TESTS_SERVER_TESTING_METRICS_SCRAPE_H_

#include <string>

#include "tests/server/http_get.h"

namespace router::server::testing {

// The value of `series` (name with its labels, exactly as exported) in `text`; -1 when absent.
double MetricValue(const std::string& text, const std::string& series);

}  // namespace router::server::testing

// Server tests name it unqualified.
namespace router::server {

using ::router::server::testing::MetricValue;

}  // namespace router::server

#endif  // ROUTER_TESTS_SERVER_TESTING_METRICS_SCRAPE_H_
