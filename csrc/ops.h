// Declarations of every C++ op body. Registration lives in torch_bindings.cpp only.
//
// Conventions shared by all backends (see ../shared/DESIGN.md "The ops contract"):
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

#ifdef MTA_WITH_CUDA
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
