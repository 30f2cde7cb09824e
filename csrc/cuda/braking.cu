// CUDA braking_step: the fused braking decode step of Self-Braking Tuning.
//
// One launch per decode step, one block per row. Thread 0 runs braking_row.h's row routine
// (the same code as the CPU op): it consumes the last token and evaluates the counter
// triggers (budget, marker ratio, steps), a few dependent loads from the small automaton
// tables. Only when the margin trigger has to decide does the whole block read the row, for
// its max. A braking row is then rewritten by the block: -inf everywhere, 0 at the next
// forced token. Rows neither braking nor reading the margin cost a few scalar loads. No
// allocation, no host synchronisation: the launch can be captured in a CUDA graph. The rules
// are those of mta_kernels/braking/reference.py. The state values are not read on the host
// here (that would sync): the row routine clamps every index it reads, and the Python layer
// checks a state before it is first used with a set of tables (BrakingState.ensure_fits).
#include "../braking_args.h"
#include "../ops.h"

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace mta {
namespace {

using braking::RowAction;

constexpr int kBlock = 512;

// Max of the row over the block, valid in thread 0; fmaxf drops NaN, so NaN counts as -inf.
template <typename scalar_t>
__device__ float block_row_max(const scalar_t* row, int64_t V, float (&warp_max)[kBlock / 32]) {
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += kBlock) m = fmaxf(m, static_cast<float>(row[i]));
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kBlock / 32; ++w) m = fmaxf(m, warp_max[w]);
  }
  return m;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kBlock) braking_step_kernel(scalar_t* __restrict__ logits, braking::Batch batch) {
  __shared__ RowAction s_action;
  __shared__ int64_t s_forced;
  __shared__ float s_warp_max[kBlock / 32];
  const int64_t b = blockIdx.x;
  const int64_t V = batch.vocab;
  scalar_t* row = logits + b * V;
  int64_t* c = batch.counters + b * braking::counter::kCount;
  bool* f = batch.flags + b * braking::flag::kCount;
  const double* cfg = batch.config + b * braking::config::kCount;

  if (threadIdx.x == 0) s_action = braking::consume_and_decide(batch.last_tokens[b], c, f, cfg, batch.tables);
  __syncthreads();
  if (s_action == RowAction::kCheckMargin) {  // block-uniform
    const float m = block_row_max(row, V, s_warp_max);
    if (threadIdx.x == 0) {
      s_action = braking::decide_margin(m, static_cast<float>(row[batch.tables.end_think_id]), c, f, cfg);
    }
    __syncthreads();
  }
  if (s_action == RowAction::kForce) {
    if (threadIdx.x == 0) s_forced = braking::forced_token(c, batch.tables, V);
    __syncthreads();
    const int64_t forced = s_forced;
    const scalar_t neg_inf = static_cast<scalar_t>(-INFINITY);
    const scalar_t zero = static_cast<scalar_t>(0.0f);
    for (int64_t i = threadIdx.x; i < V; i += kBlock) row[i] = i == forced ? zero : neg_inf;
  }
}

}  // namespace

void braking_step_cuda(const at::Tensor& logits, const at::Tensor& last_tokens, const at::Tensor& counters,
                       const at::Tensor& flags, const at::Tensor& tables, at::IntArrayRef table_layout,
                       const at::Tensor& config) {
  const braking::Batch batch =
      braking::check_args(logits, last_tokens, counters, flags, tables, table_layout, config, at::kCUDA);
  if (batch.rows == 0) return;
  const c10::cuda::CUDAGuard guard(logits.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "braking_step_cuda", [&] {
    braking_step_kernel<scalar_t>
        <<<static_cast<unsigned>(batch.rows), kBlock, 0, stream>>>(logits.data_ptr<scalar_t>(), batch);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace mta
