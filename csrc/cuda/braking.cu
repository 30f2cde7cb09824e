// CUDA braking_step: the fused braking decode step of Self-Braking Tuning.
//
// One launch per decode step, one block per row. Thread 0 consumes the last token and
// evaluates the counter triggers (budget, marker ratio, steps): a few dependent loads from
// the small automaton tables. Only when the margin trigger has to decide does the whole
// block read the row, for its max (max log p - log p(end) = max z - z[end]: the log-softmax
// normaliser cancels, so no logsumexp is needed). A braking row is then rewritten by the
// block: -inf everywhere, 0 at the next forced token. Rows neither braking nor reading the
// margin cost a few scalar loads. No allocation, no host synchronisation: the launch can be
// captured in a CUDA graph. The rules are those of mta_kernels/braking/reference.py.
#include "../ops.h"

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cmath>

namespace mta {
namespace {

constexpr int kBlock = 512;

enum Phase : int { kUntouched = 0, kMargin = 1, kForce = 2 };

struct BrakingArgs {
  const int64_t* last;
  int64_t* tt;
  int64_t* mk;
  int64_t* st;
  bool* think;
  bool* brk;
  bool* brkd;
  int64_t* reason;
  int64_t* ac;
  int64_t* cu;
  int64_t* pos;
  int64_t* ds;
  const int32_t* cls_of;
  const int32_t* trans;
  const int32_t* mlen;
  const uint8_t* step_cls;
  const int32_t* step_tab;
  const int64_t* forced_ids;
  const int64_t* max_tt;
  const float* ratio;
  const int64_t* min_tt;
  const int64_t* max_st;
  const float* margin;
  int64_t V_tab, C, K, end_think_id;
};

template <typename scalar_t>
__global__ void __launch_bounds__(kBlock) braking_step_kernel(scalar_t* __restrict__ logits, int64_t V,
                                                              BrakingArgs a) {
  __shared__ int s_phase;
  __shared__ int64_t s_forced;
  __shared__ float s_max[kBlock / 32];
  const int64_t b = blockIdx.x;
  scalar_t* row = logits + b * V;

  if (threadIdx.x == 0) {
    const int64_t tok = a.last[b];
    bool th = a.think[b], br = a.brk[b];
    int64_t t = a.tt[b], p = a.pos[b];
    if (tok >= 0 && th) {
      if (!br) {
        if (tok == a.end_think_id) {
          th = false;
        } else {
          t += 1;
          const bool in_tab = tok < a.V_tab;
          const int64_t c = in_tab ? a.cls_of[tok] : 0;
          const int64_t s = a.trans[a.ac[b] * a.C + c];
          a.ac[b] = s;
          const int64_t L = a.mlen[s];
          if (L > 0) {
            const int64_t from = a.cu[b] > t - L ? a.cu[b] : t - L;
            a.mk[b] += t - from;
            a.cu[b] = t;
          }
          // Step delimiters: a 3-state matcher, so one split across tokens counts too.
          const int32_t code = a.step_tab[(in_tab ? a.step_cls[tok] : 0) * 3 + a.ds[b]];
          a.ds[b] = code & 3;
          a.st[b] += code >> 2;
        }
      } else {
        p += 1;
        if (tok == a.end_think_id || p >= a.K) {
          th = false;
          br = false;
        }
      }
    }
    int phase = br ? kForce : kUntouched;
    if (th && !br) {
      int64_t r = 0;
      if (a.max_tt[b] >= 0 && t >= a.max_tt[b]) {
        r = 1;
      } else if (t >= a.min_tt[b] && t > 0 &&
                 static_cast<double>(a.mk[b]) / static_cast<double>(t) >= static_cast<double>(a.ratio[b])) {
        r = 2;
      } else if (a.max_st[b] >= 0 && a.st[b] >= a.max_st[b]) {
        r = 3;
      } else if (!isnan(a.margin[b])) {
        phase = kMargin;
      }
      if (r) {
        br = true;
        a.brkd[b] = true;
        a.reason[b] = r;
        p = 0;
        phase = kForce;
      }
    }
    a.tt[b] = t;
    a.pos[b] = p;
    a.think[b] = th;
    a.brk[b] = br;
    s_phase = phase;
  }
  __syncthreads();
  if (s_phase == kMargin) {
    float m = -INFINITY;  // fmaxf drops NaN: NaN logits count as -inf
    for (int64_t i = threadIdx.x; i < V; i += kBlock) m = fmaxf(m, static_cast<float>(row[i]));
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if ((threadIdx.x & 31) == 0) s_max[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
      float mx = s_max[0];
      for (int w = 1; w < kBlock / 32; ++w) mx = fmaxf(mx, s_max[w]);
      float e = static_cast<float>(row[a.end_think_id]);
      if (isnan(e)) e = -INFINITY;
      if (mx - e <= a.margin[b]) {
        a.brk[b] = true;
        a.brkd[b] = true;
        a.reason[b] = 4;
        a.pos[b] = 0;
        s_phase = kForce;
      } else {
        s_phase = kUntouched;
      }
    }
    __syncthreads();
  }
  if (s_phase == kForce) {
    if (threadIdx.x == 0) {
      const int64_t p = a.pos[b] < a.K - 1 ? a.pos[b] : a.K - 1;
      s_forced = a.forced_ids[p];
    }
    __syncthreads();
    const int64_t forced = s_forced;
    const scalar_t neg_inf = static_cast<scalar_t>(-INFINITY);
    const scalar_t zero = static_cast<scalar_t>(0.0f);
    for (int64_t i = threadIdx.x; i < V; i += kBlock) row[i] = i == forced ? zero : neg_inf;
  }
}

}  // namespace

void braking_step_cuda(const at::Tensor& logits, const at::Tensor& last_tokens,
                       const at::Tensor& thinking_tokens, const at::Tensor& marker_tokens,
                       const at::Tensor& steps, const at::Tensor& in_think, const at::Tensor& braking,
                       const at::Tensor& braked, const at::Tensor& brake_reason, const at::Tensor& ac_state,
                       const at::Tensor& counted_until, const at::Tensor& brake_pos,
                       const at::Tensor& delim_state, const at::Tensor& token_class,
                       const at::Tensor& transitions, const at::Tensor& match_len,
                       const at::Tensor& step_class, const at::Tensor& step_table, const at::Tensor& brake_ids,
                       int64_t end_think_id, const at::Tensor& max_thinking_tokens,
                       const at::Tensor& marker_ratio, const at::Tensor& min_thinking_tokens,
                       const at::Tensor& max_steps, const at::Tensor& end_think_margin) {
  TORCH_CHECK(logits.is_cuda() && logits.dim() == 2 && logits.is_contiguous(),
              "braking_step: logits must be a contiguous CUDA [B, V] tensor");
  const int64_t B = logits.size(0), V = logits.size(1);
  TORCH_CHECK(brake_ids.numel() >= 1, "braking_step: brake_ids must not be empty");
  TORCH_CHECK(end_think_id >= 0 && end_think_id < V, "braking_step: end_think_id outside the vocabulary");
  for (const at::Tensor* t : {&last_tokens, &thinking_tokens, &marker_tokens, &steps, &brake_reason, &ac_state,
                              &counted_until, &brake_pos, &delim_state, &max_thinking_tokens, &min_thinking_tokens,
                              &max_steps}) {
    TORCH_CHECK(t->is_cuda() && t->dtype() == at::kLong && t->numel() == B && t->is_contiguous(),
                "braking_step: per-row int64 tensors must be contiguous CUDA [B]");
  }
  for (const at::Tensor* t : {&in_think, &braking, &braked}) {
    TORCH_CHECK(t->is_cuda() && t->dtype() == at::kBool && t->numel() == B && t->is_contiguous(),
                "braking_step: flags must be bool CUDA [B]");
  }
  for (const at::Tensor* t : {&marker_ratio, &end_think_margin}) {
    TORCH_CHECK(t->is_cuda() && t->dtype() == at::kFloat && t->numel() == B && t->is_contiguous(),
                "braking_step: fp32 CUDA [B] expected");
  }
  TORCH_CHECK(token_class.dtype() == at::kInt && transitions.dtype() == at::kInt && match_len.dtype() == at::kInt &&
                  step_class.dtype() == at::kByte && step_table.dtype() == at::kInt && step_table.dim() == 2 &&
                  step_table.size(1) == 3 && step_table.is_contiguous() && brake_ids.dtype() == at::kLong &&
                  step_class.numel() == token_class.numel() && transitions.is_contiguous() &&
                  token_class.is_contiguous() && token_class.is_cuda() && transitions.is_cuda() &&
                  match_len.is_cuda() && step_class.is_cuda() && step_table.is_cuda() && brake_ids.is_cuda(),
              "braking_step: malformed marker tables");
  if (B == 0) return;
  const c10::cuda::CUDAGuard guard(logits.device());
  BrakingArgs a{last_tokens.data_ptr<int64_t>(),     thinking_tokens.data_ptr<int64_t>(),
                marker_tokens.data_ptr<int64_t>(),   steps.data_ptr<int64_t>(),
                in_think.data_ptr<bool>(),           braking.data_ptr<bool>(),
                braked.data_ptr<bool>(),             brake_reason.data_ptr<int64_t>(),
                ac_state.data_ptr<int64_t>(),        counted_until.data_ptr<int64_t>(),
                brake_pos.data_ptr<int64_t>(),       delim_state.data_ptr<int64_t>(),
                token_class.data_ptr<int32_t>(),     transitions.data_ptr<int32_t>(),
                match_len.data_ptr<int32_t>(),       step_class.data_ptr<uint8_t>(),
                step_table.data_ptr<int32_t>(),      brake_ids.data_ptr<int64_t>(),
                max_thinking_tokens.data_ptr<int64_t>(), marker_ratio.data_ptr<float>(),
                min_thinking_tokens.data_ptr<int64_t>(), max_steps.data_ptr<int64_t>(),
                end_think_margin.data_ptr<float>(),  token_class.numel(),
                transitions.size(1),                 brake_ids.numel(),
                end_think_id};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "braking_step_cuda", [&] {
    braking_step_kernel<scalar_t>
        <<<static_cast<unsigned>(B), kBlock, 0, stream>>>(logits.data_ptr<scalar_t>(), V, a);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace mta
