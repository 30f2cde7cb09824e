// One row of the CPU sampler (sampling.cpp), for ops that build their own scaled row first
// (mixing.cpp): the same cuts and inverse-CDF draw as mta::sample_cpu.
#pragma once

#include <cstdint>
#include <vector>

namespace mta {

struct SampledToken {
  int64_t token;  // -1: the row has no finite value
  float logprob;  // under the filtered distribution (0 for greedy rows)
};

// `z` [V]: the row already divided by its temperature (NaN already -inf); reordered scratch
// only, z itself is read. temperature <= 0 is greedy (first argmax).
SampledToken sample_scaled_row(float* z, int64_t V, float temperature, int64_t top_k, float top_p, float min_p,
                               float u, std::vector<float>& scratch);

}  // namespace mta
