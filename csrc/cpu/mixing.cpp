// CPU mix_and_sample: rows in parallel; per row one fused pass over the K models builds the
// mixture in a row buffer, then the CPU sampler's row routine (sample_row.h) draws from it.
//
// The mixture is sampled as s' / T_min with s' = sum_k w_k * (T_min / T_k) * x_k and T_min
// the row's smallest temperature: the same scores as sum_k w_k * x_k / T_k, without dividing
// by a tiny T_k (which overflowed fp32 and made the row uniform); the sampler's rule then
// makes a row greedy where s' / T_min still overflows. The log-softmax normalisers of
// `normalize` only shift a row by a constant, which no cut and no softmax sees, so they are
// skipped (mta_kernels/mixing/reference.py holds the rules: NaN as -inf, +inf as the fp32
// max, weight-0 models ignored, NaN sums as -inf, plausibility on model 0).
#include "../ops.h"
#include "sample_row.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mta {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kMax = std::numeric_limits<float>::max();
constexpr float kTiny = std::numeric_limits<float>::min();  // smallest normal

// A logit as the mixture reads it: NaN -> -inf, +inf -> the fp32 max.
inline float clean(float x) { return std::isnan(x) ? kNegInf : std::min(x, kMax); }

// s[i] (+)= w * (f * x[i]) with f = T_min / T_k <= 1, so nothing overflows but the sum; returns
// the max of the cleaned x.
template <typename scalar_t>
float accumulate(const scalar_t* x, int64_t V, float f, float w, bool first, float* s) {
  float row_max = kNegInf;
  for (int64_t i = 0; i < V; ++i) {
    const float v = clean(static_cast<float>(x[i]));
    row_max = std::max(row_max, v);
    const float term = w == 0.0f ? 0.0f : w * (f * v);
    s[i] = first ? term : s[i] + term;
  }
  return row_max;
}

// Plausibility on model 0: x_0 / T_0 >= max / T_0 + log(alpha), as x_0 >= threshold with
// threshold = max + T_0 * log(alpha) (no division: a tiny T_0 keeps only the max).
template <typename scalar_t>
void plausibility_mask(const scalar_t* x, int64_t V, float threshold, float* s) {
  for (int64_t i = 0; i < V; ++i)
    if (!(clean(static_cast<float>(x[i])) >= threshold)) s[i] = kNegInf;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> mix_and_sample_cpu(at::TensorList logits, const at::Tensor& weights,
                                                      const at::Tensor& temperature,
                                                      const at::Tensor& plausibility, const at::Tensor& top_k,
                                                      const at::Tensor& top_p, const at::Tensor& min_p,
                                                      const at::Tensor& uniform) {
  const int64_t K = static_cast<int64_t>(logits.size());
  TORCH_CHECK(K >= 1, "mix_and_sample: logits holds no model");
  const int64_t B = logits[0].size(0), V = logits[0].size(1);
  for (const at::Tensor& x : logits)
    TORCH_CHECK(x.dim() == 2 && x.size(0) == B && x.size(1) == V && x.stride(1) == 1,
                "mix_and_sample: every logits entry must be [B, V] with unit column stride");
  TORCH_CHECK(weights.sizes() == at::IntArrayRef({K, B}) && weights.is_contiguous() &&
                  temperature.sizes() == at::IntArrayRef({K, B}) && temperature.is_contiguous(),
              "mix_and_sample: weights and temperature must be contiguous [K, B] fp32");
  for (const at::Tensor* p : {&plausibility, &top_k, &top_p, &min_p, &uniform})
    TORCH_CHECK(p->dim() == 1 && p->size(0) == B && p->is_contiguous(), "per-row parameters must be contiguous [B]");

  at::Tensor tokens = at::empty({B}, logits[0].options().dtype(at::kLong));
  at::Tensor logprobs = at::empty({B}, logits[0].options().dtype(at::kFloat));
  const float* w = weights.data_ptr<float>();
  const float* t = temperature.data_ptr<float>();
  const float* alpha = plausibility.data_ptr<float>();
  const int64_t* k_ptr = top_k.data_ptr<int64_t>();
  const float* p_ptr = top_p.data_ptr<float>();
  const float* mp_ptr = min_p.data_ptr<float>();
  const float* u = uniform.data_ptr<float>();
  int64_t* tok = tokens.data_ptr<int64_t>();
  float* lp = logprobs.data_ptr<float>();

  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s(V), scratch;
    for (int64_t b = begin; b < end; ++b) {
      float t_min = t[b];
      for (int64_t k = 1; k < K; ++k) t_min = std::min(t_min, t[k * B + b]);
      float max0 = kNegInf;
      for (int64_t k = 0; k < K; ++k) {
        const at::Tensor& x = logits[k];
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "mta_mix_cpu", [&] {
          const scalar_t* row = x.data_ptr<scalar_t>() + b * x.stride(0);
          const float m = accumulate(row, V, t_min / t[k * B + b], w[k * B + b], k == 0, s.data());
          if (k == 0) max0 = m;
        });
      }
      for (int64_t i = 0; i < V; ++i)
        if (std::isnan(s[i])) s[i] = kNegInf;  // +inf - inf
      const float a = std::min(alpha[b], 1.0f);
      if (a > 0.0f) {
        const float threshold = max0 + t[b] * std::log(std::max(a, kTiny));
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits[0].scalar_type(), "mta_mix_plausible", [&] {
          plausibility_mask(logits[0].data_ptr<scalar_t>() + b * logits[0].stride(0), V, threshold, s.data());
        });
      }
      const float top_p_b = std::min(std::max(p_ptr[b], 0.0f), 1.0f);
      const float min_p_b = std::min(std::max(mp_ptr[b], 0.0f), 1.0f);
      const RowScale scale = scale_row(s.data(), V, t_min, s.data());  // s' / T_min, in place
      const SampledToken chosen = sample_scaled_row(s.data(), V, scale, k_ptr[b], top_p_b, min_p_b, u[b], scratch);
      tok[b] = chosen.token;
      lp[b] = chosen.logprob;
    }
  });
  return {tokens, logprobs};
}

}  // namespace mta
