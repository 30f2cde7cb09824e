// C++ unit test of the CPU sampling bodies, on cases small enough to check by hand.
#include "ops.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

at::Tensor row_params(float value, int64_t B) { return at::full({B}, value, at::kFloat); }

}  // namespace

int main() {
  const float inf = std::numeric_limits<float>::infinity();
  // One row, V = 5, logits chosen so the cuts are easy to see.
  at::Tensor logits = at::tensor({1.0f, 4.0f, 3.0f, 2.0f, -inf}).reshape({1, 5});
  at::Tensor k = at::full({1}, 2, at::kLong);
  at::Tensor off_k = at::zeros({1}, at::kLong);

  // top-k = 2 keeps 4 and 3.
  at::Tensor f = mta::filter_logits_cpu(logits, row_params(1, 1), k, row_params(1, 1), row_params(0, 1));
  expect(std::isinf(f[0][0].item<float>()) && f[0][1].item<float>() == 4.0f && f[0][2].item<float>() == 3.0f &&
             std::isinf(f[0][3].item<float>()),
         "top_k=2 keeps the two largest");

  // top-p = 0.5: p(4) = e^4 / (e^1+e^4+e^3+e^2) ~ 0.64 >= 0.5, so only the max stays.
  f = mta::filter_logits_cpu(logits, row_params(1, 1), off_k, row_params(0.5f, 1), row_params(0, 1));
  expect((f.isfinite().sum().item<int64_t>() == 1) && f[0][1].item<float>() == 4.0f, "top_p=0.5 keeps the max");

  // min-p = 0.3 keeps p >= 0.3 p_max: e^-1 ~ 0.37 passes, e^-2 ~ 0.14 does not.
  f = mta::filter_logits_cpu(logits, row_params(1, 1), off_k, row_params(1, 1), row_params(0.3f, 1));
  expect(f.isfinite().sum().item<int64_t>() == 2, "min_p=0.3 keeps two tokens");

  // Greedy: temperature 0 picks the argmax with logprob 0, whatever the draw.
  auto [tok, lp] = mta::sample_cpu(logits, row_params(0, 1), off_k, row_params(1, 1), row_params(0, 1),
                                    row_params(0.99f, 1));
  expect(tok[0].item<int64_t>() == 1 && lp[0].item<float>() == 0.0f, "greedy picks the argmax");

  // Inverse CDF over {4, 3} (top-k 2): u = 0 draws index 1, u just below 1 draws index 2.
  std::tie(tok, lp) = mta::sample_cpu(logits, row_params(1, 1), k, row_params(1, 1), row_params(0, 1),
                                      row_params(0.0f, 1));
  expect(tok[0].item<int64_t>() == 1, "u=0 draws the first kept token");
  std::tie(tok, lp) = mta::sample_cpu(logits, row_params(1, 1), k, row_params(1, 1), row_params(0, 1),
                                      row_params(0.9999f, 1));
  const double expected = 3.0 - std::log(std::exp(4.0) + std::exp(3.0));
  expect(tok[0].item<int64_t>() == 2 && std::fabs(lp[0].item<float>() - expected) < 1e-5,
         "u~1 draws the last kept token with its logprob");

  // A row with no finite logit returns -1.
  at::Tensor dead = at::full({1, 4}, -inf, at::kFloat);
  std::tie(tok, lp) = mta::sample_cpu(dead, row_params(1, 1), off_k, row_params(1, 1), row_params(0, 1),
                                      row_params(0.5f, 1));
  expect(tok[0].item<int64_t>() == -1 && std::isinf(lp[0].item<float>()), "no finite logit -> -1");

  if (failures == 0) std::printf("sampling_cpu: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
