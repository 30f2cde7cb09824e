// CPU filter_logits / sample: rows in parallel, partial selection instead of a full sort.
//
// Per row (sample_row.h's scale_row): the max and first argmax of x, greedy at T = 0 or where
// x_max / T overflows (the limit T -> 0+), else z = x / T (NaN -> -inf), then
//   top-k: a k-sized heap (k <= 1024) or std::nth_element for the k-th largest value;
//   top-p: the top-k survivors partially sorted in growing prefixes (64, 256, ...) until the
//          running mass reaches top_p * Z, so a sharp distribution never sorts the vocabulary;
//   min-p: z >= max + log(min_p);
// and for sample an inverse-CDF scan in vocabulary order with the row's uniform draw.
// The rules (ties kept together, NaN as -inf, greedy at T = 0, row with no finite logit ->
// token -1) are those of mta_kernels/sampling/reference.py, which tests hold this against.
#include "../ops.h"
#include "sample_row.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

namespace mta {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kHeapTopK = 1024;  // up to this k, top-k uses a heap instead of nth_element

struct RowCut {
  float max = kNegInf;
  int64_t argmax = 0;
  float threshold = kNegInf;  // keep finite z >= threshold
  bool greedy = false;
};

// exp(z - max), with the max weighing 1 even when it is +inf (extreme temperatures).
inline double weight(float z, float max) {
  return z == max ? 1.0 : std::exp(static_cast<double>(z) - static_cast<double>(max));
}

// Value of the last token top-p keeps among `cand` (finite z, any order; reordered here):
// walking down from the largest, a token is kept while the mass strictly above it is
// below target.
float top_p_cut(std::vector<float>& cand, float max, double target) {
  const int64_t n = static_cast<int64_t>(cand.size());
  double above = 0.0;
  int64_t done = 0;  // cand[0, done) is sorted descending and already walked
  for (int64_t prefix = std::min<int64_t>(64, n);; prefix = std::min<int64_t>(prefix * 4, n)) {
    std::nth_element(cand.begin() + done, cand.begin() + (prefix - 1), cand.end(), std::greater<float>());
    std::sort(cand.begin() + done, cand.begin() + prefix, std::greater<float>());
    for (int64_t j = done; j < prefix; ++j) {
      if (j > 0 && above >= target) return cand[j - 1];  // the top token is always kept
      above += weight(cand[j], max);
    }
    done = prefix;
    if (prefix == n) return cand[n - 1];
  }
}

// The k-th largest finite value of z, or -inf when fewer than k are finite. Small k: one
// pass with a k-sized min-heap (a compare per element, no copy of the row); large k:
// nth_element on a copy.
float kth_largest(const float* z, int64_t V, int64_t k, std::vector<float>& scratch) {
  scratch.clear();
  if (k <= kHeapTopK) {
    for (int64_t i = 0; i < V; ++i) {
      const float v = z[i];
      if (static_cast<int64_t>(scratch.size()) < k) {
        if (v > kNegInf) {
          scratch.push_back(v);
          std::push_heap(scratch.begin(), scratch.end(), std::greater<float>());
        }
      } else if (v > scratch.front()) {
        std::pop_heap(scratch.begin(), scratch.end(), std::greater<float>());
        scratch.back() = v;
        std::push_heap(scratch.begin(), scratch.end(), std::greater<float>());
      }
    }
    return static_cast<int64_t>(scratch.size()) < k ? kNegInf : scratch.front();
  }
  for (int64_t i = 0; i < V; ++i)
    if (z[i] > kNegInf) scratch.push_back(z[i]);
  if (static_cast<int64_t>(scratch.size()) < k) return kNegInf;
  std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<float>());
  return scratch[k - 1];
}

RowCut row_cut(const float* z, int64_t V, const RowScale& scale, int64_t top_k, float top_p, float min_p,
               std::vector<float>& scratch) {
  RowCut cut;
  cut.greedy = scale.greedy;
  cut.max = scale.max;
  cut.argmax = scale.argmax;
  if (cut.greedy || cut.max == kNegInf) return cut;

  float thresh_k = kNegInf;
  if (top_k > 0 && top_k < V) thresh_k = kth_largest(z, V, top_k, scratch);
  // The top-p candidates: what top-k kept (ties at the cut included).
  scratch.clear();
  for (int64_t i = 0; i < V; ++i)
    if (z[i] > kNegInf && z[i] >= thresh_k) scratch.push_back(z[i]);
  float thresh_p = kNegInf;
  if (top_p < 1.0f) {
    double total = 0.0;
    for (float v : scratch) total += weight(v, cut.max);
    thresh_p = top_p_cut(scratch, cut.max, static_cast<double>(top_p) * total);
  }
  const float thresh_min = min_p > 0.0f ? cut.max + std::log(min_p) : kNegInf;
  cut.threshold = std::max({thresh_k, thresh_p, thresh_min});
  return cut;
}

inline bool kept(const RowCut& cut, const float* z, int64_t i) {
  if (cut.greedy) return i == cut.argmax && cut.max > kNegInf;
  return z[i] > kNegInf && z[i] >= cut.threshold;
}

struct RowParams {
  const float* temperature;
  const int64_t* top_k;
  const float* top_p;
  const float* min_p;
  float p(int64_t b) const { return std::min(std::max(top_p[b], 0.0f), 1.0f); }
  float mp(int64_t b) const { return std::min(std::max(min_p[b], 0.0f), 1.0f); }
};

RowParams row_params(const at::Tensor& temperature, const at::Tensor& top_k, const at::Tensor& top_p,
                     const at::Tensor& min_p) {
  return {temperature.data_ptr<float>(), top_k.data_ptr<int64_t>(), top_p.data_ptr<float>(),
          min_p.data_ptr<float>()};
}

void check_inputs(const at::Tensor& logits, std::initializer_list<const at::Tensor*> params) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous(), "logits must be a contiguous [B, V] tensor");
  for (const at::Tensor* p : params)
    TORCH_CHECK(p->dim() == 1 && p->size(0) == logits.size(0) && p->is_contiguous(),
                "per-row parameters must be contiguous [B] tensors");
}

}  // namespace

at::Tensor filter_logits_cpu(const at::Tensor& logits, const at::Tensor& temperature,
                             const at::Tensor& top_k, const at::Tensor& top_p,
                             const at::Tensor& min_p) {
  check_inputs(logits, {&temperature, &top_k, &top_p, &min_p});
  const int64_t B = logits.size(0), V = logits.size(1);
  at::Tensor out = at::empty({B, V}, logits.options().dtype(at::kFloat));
  const RowParams prm = row_params(temperature, top_k, top_p, min_p);
  float* out_ptr = out.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "mta_filter_logits_cpu", [&] {
    const scalar_t* x = logits.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch;
      for (int64_t b = begin; b < end; ++b) {
        float* z = out_ptr + b * V;  // z lives in the output row, filtered in place
        const RowScale scale = scale_row(x + b * V, V, prm.temperature[b], z);
        const RowCut cut = row_cut(z, V, scale, prm.top_k[b], prm.p(b), prm.mp(b), scratch);
        for (int64_t i = 0; i < V; ++i)
          if (!kept(cut, z, i)) z[i] = kNegInf;
      }
    });
  });
  return out;
}

SampledToken sample_scaled_row(const float* z, int64_t V, const RowScale& scale, int64_t top_k, float top_p,
                               float min_p, float u, std::vector<float>& scratch) {
  const RowCut cut = row_cut(z, V, scale, top_k, top_p, min_p, scratch);
  if (cut.max == kNegInf) return {-1, kNegInf};
  if (cut.greedy) return {cut.argmax, 0.0f};
  double total = 0.0;
  int64_t last_kept = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (kept(cut, z, i)) {
      total += weight(z[i], cut.max);
      last_kept = i;
    }
  }
  // First token whose running mass exceeds u * Z; rounding past the end -> last kept.
  const double target = static_cast<double>(u) * total;
  double running = 0.0;
  int64_t chosen = last_kept;
  for (int64_t i = 0; i < V; ++i) {
    if (!kept(cut, z, i)) continue;
    running += weight(z[i], cut.max);
    if (running > target) {
      chosen = i;
      break;
    }
  }
  return {chosen, static_cast<float>(std::log(weight(z[chosen], cut.max)) - std::log(total))};
}

std::tuple<at::Tensor, at::Tensor> sample_cpu(const at::Tensor& logits, const at::Tensor& temperature,
                                              const at::Tensor& top_k, const at::Tensor& top_p,
                                              const at::Tensor& min_p, const at::Tensor& uniform) {
  check_inputs(logits, {&temperature, &top_k, &top_p, &min_p, &uniform});
  const int64_t B = logits.size(0), V = logits.size(1);
  at::Tensor tokens = at::empty({B}, logits.options().dtype(at::kLong));
  at::Tensor logprobs = at::empty({B}, logits.options().dtype(at::kFloat));
  const RowParams prm = row_params(temperature, top_k, top_p, min_p);
  const float* u = uniform.data_ptr<float>();
  int64_t* tok = tokens.data_ptr<int64_t>();
  float* lp = logprobs.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "mta_sample_cpu", [&] {
    const scalar_t* x = logits.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> z(V), scratch;
      for (int64_t b = begin; b < end; ++b) {
        const RowScale scale = scale_row(x + b * V, V, prm.temperature[b], z.data());
        const SampledToken s =
            sample_scaled_row(z.data(), V, scale, prm.top_k[b], prm.p(b), prm.mp(b), u[b], scratch);
        tok[b] = s.token;
        lp[b] = s.logprob;
      }
    });
  });
  return {tokens, logprobs};
}

}  // namespace mta
