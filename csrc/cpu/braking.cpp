// CPU braking_step: the fused braking decode step of Self-Braking Tuning, rows in parallel.
//
// The row routine (consume, decide, force) is braking_row.h's, shared with the CUDA kernel;
// this file adds the one part that differs by device: the row max the margin trigger reads,
// vectorised over one row. The exact rules are those of mta_kernels/braking/reference.py,
// which tests hold this against.
#include "../braking_args.h"
#include "../ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <type_traits>

namespace mta {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Independent lanes, each `v > m ? v : m`: the MAXPS pattern, so the loop vectorises
// without fast-math, and NaN never wins a > comparison (NaN counts as -inf).
template <typename scalar_t>
inline float lane_max(const scalar_t* x, int64_t V) {
  constexpr int kLanes = 16;
  float lane[kLanes];
  for (int j = 0; j < kLanes; ++j) lane[j] = kNegInf;
  int64_t i = 0;
  for (; i + kLanes <= V; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = static_cast<float>(x[i + j]);
      lane[j] = v > lane[j] ? v : lane[j];
    }
  }
  float m = kNegInf;
  for (; i < V; ++i) {
    const float v = static_cast<float>(x[i]);
    m = v > m ? v : m;
  }
  for (int j = 0; j < kLanes; ++j) m = lane[j] > m ? lane[j] : m;
  return m;
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
// The wheel targets baseline x86-64 (SSE2); the fp32 row max, the margin trigger's whole
// cost, also gets an AVX2 build picked at run time.
__attribute__((target("avx2"))) float lane_max_f32_avx2(const float* x, int64_t V) { return lane_max(x, V); }
const bool kHasAvx2 = __builtin_cpu_supports("avx2");
#endif

// Max of a logits row in fp32; NaN counts as -inf.
template <typename scalar_t>
float row_max(const scalar_t* x, int64_t V) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  if constexpr (std::is_same_v<scalar_t, float>) {
    return kHasAvx2 ? lane_max_f32_avx2(x, V) : lane_max(x, V);
  }
#endif
  return lane_max(x, V);
}

}  // namespace

void braking_step_cpu(const at::Tensor& logits, const at::Tensor& last_tokens, const at::Tensor& counters,
                      const at::Tensor& flags, const at::Tensor& tables, at::IntArrayRef table_layout,
                      const at::Tensor& config) {
  using namespace braking;
  const Batch batch = check_args(logits, last_tokens, counters, flags, tables, table_layout, config, at::kCPU);
  check_state_values(batch);
  const int64_t V = batch.vocab;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "braking_step_cpu", [&] {
    scalar_t* x = logits.data_ptr<scalar_t>();
    at::parallel_for(0, batch.rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        int64_t* c = batch.counters + b * counter::kCount;
        bool* f = batch.flags + b * flag::kCount;
        const double* cfg = batch.config + b * config::kCount;
        scalar_t* row = x + b * V;
        RowAction action = consume_and_decide(batch.last_tokens[b], c, f, cfg, batch.tables);
        if (action == RowAction::kCheckMargin) {
          action = decide_margin(row_max(row, V), static_cast<float>(row[batch.tables.end_think_id]), c, f, cfg);
        }
        if (action == RowAction::kForce) {
          std::fill(row, row + V, static_cast<scalar_t>(kNegInf));
          row[forced_token(c, batch.tables, V)] = static_cast<scalar_t>(0.0f);
        }
      }
    });
  });
}

}  // namespace mta
