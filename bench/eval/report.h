// File: report.h
//
// The Markdown report of one dataset, rendered from router_eval's summary.json alone (so it can
// be regenerated without rerunning anything): set-up, one table per experiment with mean ± sd over
// seeds, and the papers' claims next to ours. Differences whose paired mean lies within two
// standard errors are written as ties. Figures that were not measured are written "not measured".
//
// Thread-safety: pure function. Missing summary entries are rendered as "n/a", never an error.

#ifndef BENCH_EVAL_REPORT_H_
#define BENCH_EVAL_REPORT_H_

#include <string>

#include "nlohmann/json.hpp"

namespace router::core::eval {

std::string RenderReport(const nlohmann::json& summary);

}  // namespace router::core::eval

#endif  // BENCH_EVAL_REPORT_H_
