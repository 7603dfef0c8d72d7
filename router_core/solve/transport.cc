#include "router_core/solve/transport.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>

#include "router_core/solve/solution.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kOutside = 0;  // node 0 is the outside option; nodes 1..K are the limited models

// One entry of an edge heap: moving `query` off its node along the edge loses `loss`.
struct HeapEntry {
  double loss;
  int query;
  int stamp;  // the query's move counter when pushed; stale once the query has moved again
  bool operator>(const HeapEntry& other) const { return loss > other.loss; }
};

class TransportState {
 public:
  TransportState(const Instance& instance, const std::vector<double>& weight)
      : inst_(instance), weight_(weight) {
    for (int j = 0; j < inst_.num_models; ++j) {
      if (inst_.is_limited(j)) {
        bins_.push_back(j);
      }
    }
    num_nodes_ = static_cast<int>(bins_.size()) + 1;
    const int n = inst_.num_queries;
    outside_model_.assign(n, kUnserved);
    outside_value_.assign(n, 0.0);
    // The penalty of "unserved" must dominate any sum of weights so that the minimum number of
    // queries is left unserved.
    double max_abs = 0.0;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < inst_.num_models; ++j) {
        if (inst_.is_allowed(i, j)) max_abs = std::max(max_abs, std::abs(weight_[inst_.index(i, j)]));
      }
    }
    unserved_value_ = -(2.0 * max_abs + 1.0) * (n + 1);
    // Relaxations smaller than this are rounding noise on sums involving the penalty.
    tolerance_ = 1e-12 * (2.0 * max_abs + 1.0) * (n + 1);
    for (int i = 0; i < n; ++i) {
      double best = unserved_value_;
      for (int j = 0; j < inst_.num_models; ++j) {
        if (inst_.is_allowed(i, j) && !inst_.is_limited(j) && weight_[inst_.index(i, j)] > best) {
          best = weight_[inst_.index(i, j)];
          outside_model_[i] = j;
        }
      }
      outside_value_[i] = best;
    }
    capacity_.assign(num_nodes_, 0);
    count_.assign(num_nodes_, 0);
    for (int k = 1; k < num_nodes_; ++k) capacity_[k] = inst_.slots[bins_[k - 1]];
    heaps_.assign(static_cast<size_t>(num_nodes_) * num_nodes_, {});
    at_.assign(n, kOutside);
    stamp_.assign(n, 0);
    const size_t num_edges = static_cast<size_t>(num_nodes_) * num_nodes_;
    edge_.assign(num_edges, kInf);
    edge_query_.assign(num_edges, -1);
    row_dirty_.assign(num_nodes_, 1);
  }

  std::optional<TransportResult> Solve(const Deadline& deadline) {
    const int n = inst_.num_queries;
    for (int i = 0; i < n; ++i) {
      int best_node = kOutside;
      double best = outside_value_[i];
      for (int k = 1; k < num_nodes_; ++k) {
        const double v = NodeValue(i, k);
        if (v > best) {
          best = v;
          best_node = k;
        }
      }
      at_[i] = best_node;
      ++count_[best_node];
    }
    BuildHeaps();
    int units = 0;
    for (int k = 1; k < num_nodes_; ++k) {
      while (count_[k] > capacity_[k]) {
        if (units++ % kTransportDeadlineStride == 0 && deadline.Passed()) return std::nullopt;
        EvictOne(k);
      }
    }
    return Result();
  }

 private:
  // Value of query i at node k; -inf where the model is not allowed.
  double NodeValue(int i, int k) const {
    if (k == kOutside) return outside_value_[i];
    const int j = bins_[k - 1];
    return inst_.is_allowed(i, j) ? weight_[inst_.index(i, j)] : -kInf;
  }

  std::vector<HeapEntry>& Heap(int from, int to) { return heaps_[from * num_nodes_ + to]; }

  void PushEdges(int i) {
    const int u = at_[i];
    row_dirty_[u] = 1;
    const double here = NodeValue(i, u);
    for (int v = 0; v < num_nodes_; ++v) {
      if (v == u) continue;
      const double there = NodeValue(i, v);
      if (there == -kInf) continue;
      std::vector<HeapEntry>& heap = Heap(u, v);
      heap.push_back({here - there, i, stamp_[i]});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  }

  // The initial edge heaps, in O(N*K) with one allocation per heap: sizing them first and heapifying
  // once avoids the reallocation and page-fault churn of N*K individual pushes.
  void BuildHeaps() {
    const int n = inst_.num_queries;
    std::vector<int> size(heaps_.size(), 0);
    for (int i = 0; i < n; ++i) {
      for (int v = 0; v < num_nodes_; ++v) {
        if (v != at_[i] && NodeValue(i, v) != -kInf) ++size[at_[i] * num_nodes_ + v];
      }
    }
    for (size_t e = 0; e < heaps_.size(); ++e) heaps_[e].reserve(size[e]);
    for (int i = 0; i < n; ++i) {
      const int u = at_[i];
      const double here = NodeValue(i, u);
      for (int v = 0; v < num_nodes_; ++v) {
        if (v == u) continue;
        const double there = NodeValue(i, v);
        if (there != -kInf) Heap(u, v).push_back({here - there, i, stamp_[i]});
      }
    }
    for (std::vector<HeapEntry>& heap : heaps_) {
      std::make_heap(heap.begin(), heap.end(), std::greater<>());
    }
  }

  // Least-loss live entry of edge (from, to), or nullptr. Drops stale entries on the way.
  const HeapEntry* Top(int from, int to) {
    std::vector<HeapEntry>& heap = Heap(from, to);
    while (!heap.empty()) {
      const HeapEntry& top = heap.front();
      if (at_[top.query] == from && stamp_[top.query] == top.stamp) return &top;
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      heap.pop_back();
    }
    return nullptr;
  }

  bool IsSink(int k) const { return k == kOutside || count_[k] < capacity_[k]; }

  // Moves one unit out of over-full bin `source` along a shortest eviction path.
  void EvictOne(int source) {
    const int nodes = num_nodes_;
    for (int u = 0; u < nodes; ++u) {
      if (!row_dirty_[u]) continue;
      row_dirty_[u] = 0;
      for (int v = 0; v < nodes; ++v) {
        if (u == v) continue;
        const HeapEntry* top = Top(u, v);
        edge_[u * nodes + v] = top != nullptr ? top->loss : kInf;
        edge_query_[u * nodes + v] = top != nullptr ? top->query : -1;
      }
    }
    dist_.assign(nodes, kInf);
    pred_.assign(nodes, -1);
    dist_[source] = 0.0;
    // Bellman-Ford: losses can be negative after earlier moves, but the residual graph of an
    // optimal flow has no negative cycle, so nodes - 1 rounds suffice.
    for (int round = 0; round + 1 < nodes; ++round) {
      bool changed = false;
      for (int u = 0; u < nodes; ++u) {
        if (dist_[u] == kInf) continue;
        for (int v = 0; v < nodes; ++v) {
          const double w = edge_[u * nodes + v];
          if (w == kInf || v == source) continue;
          if (dist_[u] + w < dist_[v] - tolerance_) {
            dist_[v] = dist_[u] + w;
            pred_[v] = u;
            changed = true;
          }
        }
      }
      if (!changed) break;
    }
    int sink = kOutside;  // always reachable: the over-full bin holds queries, all may go outside
    for (int k = 1; k < nodes; ++k) {
      if (k != source && IsSink(k) && dist_[k] < dist_[sink]) sink = k;
    }
    // Collect the queries of the path before moving any, then move them. Rounding on the large
    // unserved penalty can in principle close a tiny negative cycle in `pred_`; a path longer than
    // the node count reveals it, and the unit then goes straight to the outside option (still
    // feasible, at worst not the least-loss move).
    moves_.clear();
    for (int v = sink; v != source; v = pred_[v]) {
      if (static_cast<int>(moves_.size()) >= nodes || pred_[v] < 0) {
        moves_.assign(1, {edge_query_[source * nodes + kOutside], kOutside});
        break;
      }
      moves_.push_back({edge_query_[pred_[v] * nodes + v], v});
    }
    for (const auto& [query, destination] : moves_) {
      row_dirty_[at_[query]] = 1;  // the query no longer leaves from here
      --count_[at_[query]];
      ++count_[destination];
      at_[query] = destination;
      ++stamp_[query];
      PushEdges(query);
    }
  }

  // Slot prices: the smallest potentials that keep every query at its best option, i.e. the
  // smallest price_k >= 0 with price_v >= price_u - loss(u -> v) over every residual edge, with the
  // outside option and bins with spare capacity fixed at 0 (longest paths; finite because an optimal
  // flow leaves no negative-loss cycle). Smallest prices give the tightest bound when a full bin
  // holds queries that cannot go anywhere else.
  std::vector<double> SlotPrices() {
    const int nodes = num_nodes_;
    std::vector<double> potential(nodes, 0.0);
    for (int round = 0; round < nodes; ++round) {
      bool changed = false;
      for (int u = 0; u < nodes; ++u) {
        for (int v = 1; v < nodes; ++v) {
          if (u == v || IsSink(v)) continue;
          const HeapEntry* top = Top(u, v);
          if (top != nullptr && potential[u] - top->loss > potential[v] + tolerance_) {
            potential[v] = potential[u] - top->loss;
            changed = true;
          }
        }
      }
      if (!changed) break;
    }
    std::vector<double> price(inst_.num_models, 0.0);
    for (int k = 1; k < nodes; ++k) price[bins_[k - 1]] = potential[k];
    return price;
  }

  TransportResult Result() {
    TransportResult result;
    const int n = inst_.num_queries;
    result.model_of_query.assign(n, kUnserved);
    for (int i = 0; i < n; ++i) {
      const int k = at_[i];
      const int model = k == kOutside ? outside_model_[i] : bins_[k - 1];
      result.model_of_query[i] = model;
      if (model == kUnserved) {
        ++result.num_unserved;
      } else {
        result.value += weight_[inst_.index(i, model)];
      }
    }
    result.slot_price = SlotPrices();
    return result;
  }

  const Instance& inst_;
  const std::vector<double>& weight_;
  std::vector<int> bins_;           // node k (1..K) -> model index
  int num_nodes_ = 1;
  std::vector<int> outside_model_;     // per query: best unlimited allowed model or kUnserved
  std::vector<double> outside_value_;  // its weight, or unserved_value_
  double unserved_value_ = 0.0;
  double tolerance_ = 0.0;
  std::vector<int64_t> capacity_;
  std::vector<int64_t> count_;
  std::vector<std::vector<HeapEntry>> heaps_;  // [from * num_nodes_ + to]
  std::vector<int> at_;
  std::vector<int> stamp_;
  // Residual graph of the eviction search, cached across units: row u (edges out of node u) only
  // changes when a query leaves u or edges are pushed from u, which marks it dirty. Rebuilding only
  // the rows a path touched, instead of all (K+1)^2 edges, is most of the speed at large excess.
  std::vector<double> edge_;
  std::vector<int> edge_query_;
  std::vector<char> row_dirty_;
  // Scratch of EvictOne, kept to avoid allocating per unit.
  std::vector<double> dist_;
  std::vector<int> pred_;
  std::vector<std::pair<int, int>> moves_;  // (query, destination)
};

}  // namespace

std::optional<TransportResult> SolveTransport(const Instance& instance,
                                              const std::vector<double>& weight,
                                              const Deadline& deadline) {
  if (deadline.Passed()) return std::nullopt;
  TransportState state(instance, weight);
  return state.Solve(deadline);
}

}  // namespace router::core
