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

// braking_step (SBT braking decode step): mutates logits, counters and flags in place.
//   last_tokens int64 [B] (negative: nothing to consume); counters int64 [B, 8], flags bool
//   [B, 3], config float64 [B, 5] and the marker tables (a uint8 buffer described by
//   table_layout) as braking_row.h lays them out.
#define MTA_BRAKING_STEP_ARGS(name)                                                                           \
  void name(const at::Tensor& logits, const at::Tensor& last_tokens, const at::Tensor& counters,             \
            const at::Tensor& flags, const at::Tensor& tables, at::IntArrayRef table_layout, const at::Tensor& config)
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
