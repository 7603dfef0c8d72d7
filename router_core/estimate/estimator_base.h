// File: estimator_base.h
//
// EstimatorBase<Derived>: the part of QualityEstimator that every estimator implements alike, so
// that each one implements only Predict, AddModel, RemoveModel and Save. It answers kind() with
// Derived::kKind, feature_dim() and models() with the dimension and pool it keeps, and Clone() with
// a copy of the whole Derived (which must be copyable). The derived class keeps models_ in the
// order Predict fills its output, parallel to its own per-model state.
//
// Thread-safety and ownership: as QualityEstimator. Cost: the accessors are O(1); Clone copies the
// whole state.

#ifndef ROUTER_CORE_ESTIMATE_ESTIMATOR_BASE_H_
#define ROUTER_CORE_ESTIMATE_ESTIMATOR_BASE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "router_core/estimate/quality_estimator.h"

namespace router::core {

template <typename Derived>
class EstimatorBase : public QualityEstimator {
 public:
  absl::string_view kind() const final { return Derived::kKind; }
  int feature_dim() const final { return dim_; }
  const std::vector<std::string>& models() const final { return models_; }
  std::unique_ptr<QualityEstimator> Clone() const final {
    return std::unique_ptr<QualityEstimator>(new Derived(static_cast<const Derived&>(*this)));
  }

 protected:
  explicit EstimatorBase(int dim) : dim_(dim) {}

  // The feature dimension, > 0.
  int dim_;
  // The pool, in Predict's order.
  std::vector<std::string> models_;
};

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_ESTIMATOR_BASE_H_
