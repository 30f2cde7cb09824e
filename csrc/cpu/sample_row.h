// One row of the CPU sampler (sampling.cpp), shared with the ops that build their own row
// first (mixing.cpp): the temperature rule, the cuts and the inverse-CDF draw of
// mta::sample_cpu.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace mta {

struct SampledToken {
  int64_t token;  // -1: the row has no finite value
  float logprob;  // under the filtered distribution (0 for greedy rows)
};

// How a row is scaled: z = x / t, or greedy (the first argmax of x, with t = 1).
struct RowScale {
  float t = 1.0f;
  bool greedy = true;
  float max = -std::numeric_limits<float>::infinity();  // max of z (= max of x / t)
  int64_t argmax = 0;                                   // first argmax of x
};

// Reads x once (NaN counts as -inf) for its max and first argmax, decides the row's scale,
// then writes z = x / t (-0.0 folded into +0.0). A temperature <= 0 is greedy, and so is a
// positive one so small that the row max overflows fp32 when divided by it: the limit
// T -> 0+ is greedy, where dividing would leave +-inf in place of the ranking (reference.py's
// rule, on every backend). z may alias x (a float row scaled in place).
template <typename scalar_t>
RowScale scale_row(const scalar_t* x, int64_t V, float temperature, float* z) {
  RowScale s;
  for (int64_t i = 0; i < V; ++i) {
    const float v = static_cast<float>(x[i]);
    if (v > s.max) {  // NaN never compares greater
      s.max = v;
      s.argmax = i;
    }
  }
  s.greedy = !(temperature > 0.0f) || (std::isfinite(s.max) && !std::isfinite(s.max / temperature));
  s.t = s.greedy ? 1.0f : temperature;
  s.max = s.max / s.t + 0.0f;
  for (int64_t i = 0; i < V; ++i) {
    const float v = static_cast<float>(x[i]);
    z[i] = std::isnan(v) ? -std::numeric_limits<float>::infinity() : v / s.t + 0.0f;
  }
  return s;
}

// The draw from a row scale_row prepared: `z` [V] is read (scratch is reordered, not z).
SampledToken sample_scaled_row(const float* z, int64_t V, const RowScale& scale, int64_t top_k, float top_p,
                               float min_p, float u, std::vector<float>& scratch);

}  // namespace mta
