// Declarations of every C++ op body. Registration lives in torch_bindings.cpp only.
//
// Conventions shared by all backends (semantics: each family's mta_kernels/<family>/reference.py):
//   logits      [B, V] fp32 / bf16 / fp16, contiguous
//   temperature [B] fp32   (0 = greedy)
//   top_k       [B] int64  (<= 0 or >= V: off)
//   top_p       [B] fp32   (in (0, 1]; 1: off)
//   min_p       [B] fp32   (in [0, 1]; 0: off)
//   uniform     [B] fp32   (one U[0,1) draw per row: inverse-CDF sampling, so every backend
//                           picks the same token from the same draw)
// The Python layer validates and normalises every argument before calling these.
#pragma once

#include <torch/all.h>

#include <tuple>

namespace mta {

at::Tensor filter_logits_cpu(const at::Tensor& logits, const at::Tensor& temperature,
                             const at::Tensor& top_k, const at::Tensor& top_p,
                             const at::Tensor& min_p);

std::tuple<at::Tensor, at::Tensor> sample_cpu(const at::Tensor& logits,
                                              const at::Tensor& temperature,
                                              const at::Tensor& top_k, const at::Tensor& top_p,
                                              const at::Tensor& min_p, const at::Tensor& uniform);

// mix_and_sample: K logits [B, V] (dtypes may differ; unit column stride, any row stride),
//   weights and temperature [K, B] fp32, plausibility [B] fp32; the rest as sample.
std::tuple<at::Tensor, at::Tensor> mix_and_sample_cpu(at::TensorList logits, const at::Tensor& weights,
                                                      const at::Tensor& temperature,
                                                      const at::Tensor& plausibility, const at::Tensor& top_k,
                                                      const at::Tensor& top_p, const at::Tensor& min_p,
                                                      const at::Tensor& uniform);

// braking_step (SBT braking decode step): mutates logits and the per-row state in place.
//   last_tokens and the int64 state / config tensors [B]; in_think, braking, braked bool [B];
//   marker_ratio, end_think_margin fp32 [B] (NaN: off); max_* int64 [B] (negative: off);
//   token_class int32 [V_tab], transitions int32 [S, C], match_len int32 [S],
//   delim_state int64 [B] (step-delimiter matcher state, 0..2); step_class uint8 [V_tab],
//   step_table int32 [NS, 3] (next delimiter state + 4 * delimiters completed, per state);
//   brake_ids int64 [K] ending with end_think_id.
#define MTA_BRAKING_STEP_ARGS(name)                                                          \
  void name(const at::Tensor& logits, const at::Tensor& last_tokens,                       \
            const at::Tensor& thinking_tokens, const at::Tensor& marker_tokens,            \
            const at::Tensor& steps, const at::Tensor& in_think, const at::Tensor& braking, \
            const at::Tensor& braked, const at::Tensor& brake_reason,                      \
            const at::Tensor& ac_state, const at::Tensor& counted_until,                   \
            const at::Tensor& brake_pos, const at::Tensor& delim_state,                    \
            const at::Tensor& token_class, const at::Tensor& transitions,                  \
            const at::Tensor& match_len, const at::Tensor& step_class,                     \
            const at::Tensor& step_table, const at::Tensor& brake_ids, int64_t end_think_id, \
            const at::Tensor& max_thinking_tokens, const at::Tensor& marker_ratio,         \
            const at::Tensor& min_thinking_tokens, const at::Tensor& max_steps,            \
            const at::Tensor& end_think_margin)
MTA_BRAKING_STEP_ARGS(braking_step_cpu);

#ifdef MTA_WITH_CUDA
MTA_BRAKING_STEP_ARGS(braking_step_cuda);
at::Tensor filter_logits_cuda(const at::Tensor& logits, const at::Tensor& temperature,
                              const at::Tensor& top_k, const at::Tensor& top_p,
                              const at::Tensor& min_p);

std::tuple<at::Tensor, at::Tensor> sample_cuda(const at::Tensor& logits,
                                               const at::Tensor& temperature,
                                               const at::Tensor& top_k, const at::Tensor& top_p,
                                               const at::Tensor& min_p,
                                               const at::Tensor& uniform);
#endif

}  // namespace mta
