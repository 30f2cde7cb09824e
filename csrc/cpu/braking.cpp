// CPU braking_step: the fused braking decode step of Self-Braking Tuning, rows in parallel.
//
// Per row: consume the last token (thinking-token / marker-coverage / step counters and the
// token-level Aho-Corasick automaton, or the forced brake position), evaluate the triggers in
// the order budget, marker ratio, steps, margin, and on a braking row write -inf everywhere
// except the next forced token (0). Only the margin trigger reads the row (its max; the
// log-softmax normaliser cancels in max log p - log p(end)). The exact rules are those of
// mta_kernels/braking/reference.py, which tests hold this against.
#include "../ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

namespace mta {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Independent lanes, each `v > m ? v : m`: the MAXPS pattern, so the loop vectorises
// without fast-math, and NaN never wins a > comparison (NaN counts as -inf).
template <typename scalar_t>
inline float row_max(const scalar_t* x, int64_t V) {
  constexpr int kLanes = 16;
  float lane[kLanes];
  for (int j = 0; j < kLanes; ++j) lane[j] = kNegInf;
  int64_t i = 0;
  for (; i + kLanes <= V; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = static_cast<float>(x[i + j]);
      lane[j] = v > lane[j] ? v : lane[j];
    }
  }
  float m = kNegInf;
  for (; i < V; ++i) {
    const float v = static_cast<float>(x[i]);
    m = v > m ? v : m;
  }
  for (int j = 0; j < kLanes; ++j) m = lane[j] > m ? lane[j] : m;
  return m;
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
// The wheel targets baseline x86-64 (SSE2); the fp32 row max, the margin trigger's whole
// cost, also gets an AVX2 build picked at run time.
__attribute__((target("avx2"))) float row_max_f32_avx2(const float* x, int64_t V) { return row_max(x, V); }
const bool kHasAvx2 = __builtin_cpu_supports("avx2");
#endif

template <typename scalar_t>
float row_gap(const scalar_t* x, int64_t V, int64_t end_think_id) {
  float m;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  if constexpr (std::is_same_v<scalar_t, float>) {
    m = kHasAvx2 ? row_max_f32_avx2(x, V) : row_max(x, V);
  } else {
    m = row_max(x, V);
  }
#else
  m = row_max(x, V);
#endif
  float e = static_cast<float>(x[end_think_id]);
  if (std::isnan(e)) e = kNegInf;
  return m - e;
}

}  // namespace

void braking_step_cpu(const at::Tensor& logits, const at::Tensor& last_tokens,
                      const at::Tensor& thinking_tokens, const at::Tensor& marker_tokens,
                      const at::Tensor& steps, const at::Tensor& in_think,
                      const at::Tensor& braking, const at::Tensor& braked,
                      const at::Tensor& brake_reason, const at::Tensor& ac_state,
                      const at::Tensor& counted_until, const at::Tensor& brake_pos,
                      const at::Tensor& delim_state, const at::Tensor& token_class,
                      const at::Tensor& transitions, const at::Tensor& match_len,
                      const at::Tensor& step_class, const at::Tensor& step_table,
                      const at::Tensor& brake_ids, int64_t end_think_id,
                      const at::Tensor& max_thinking_tokens, const at::Tensor& marker_ratio,
                      const at::Tensor& min_thinking_tokens, const at::Tensor& max_steps,
                      const at::Tensor& end_think_margin) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous(), "braking_step: logits must be a contiguous [B, V] tensor");
  const int64_t B = logits.size(0), V = logits.size(1);
  const int64_t V_tab = token_class.size(0), C = transitions.size(1), K = brake_ids.size(0);
  TORCH_CHECK(K >= 1, "braking_step: brake_ids must not be empty");
  TORCH_CHECK(end_think_id >= 0 && end_think_id < V, "braking_step: end_think_id outside the vocabulary");
  for (const at::Tensor* t : {&last_tokens, &thinking_tokens, &marker_tokens, &steps, &brake_reason, &ac_state,
                              &counted_until, &brake_pos, &delim_state, &max_thinking_tokens, &min_thinking_tokens,
                              &max_steps}) {
    TORCH_CHECK(t->dtype() == at::kLong && t->numel() == B && t->is_contiguous(),
                "braking_step: per-row int64 tensors must be contiguous [B]");
  }
  for (const at::Tensor* t : {&in_think, &braking, &braked}) {
    TORCH_CHECK(t->dtype() == at::kBool && t->numel() == B && t->is_contiguous(), "braking_step: flags must be bool [B]");
  }
  for (const at::Tensor* t : {&marker_ratio, &end_think_margin}) {
    TORCH_CHECK(t->dtype() == at::kFloat && t->numel() == B && t->is_contiguous(), "braking_step: fp32 [B] expected");
  }
  TORCH_CHECK(token_class.dtype() == at::kInt && transitions.dtype() == at::kInt && match_len.dtype() == at::kInt &&
                  step_class.dtype() == at::kByte && step_table.dtype() == at::kInt && step_table.dim() == 2 &&
                  step_table.size(1) == 3 && step_table.is_contiguous() && brake_ids.dtype() == at::kLong &&
                  step_class.numel() == V_tab && transitions.is_contiguous() && token_class.is_contiguous(),
              "braking_step: malformed marker tables");

  const int64_t* last = last_tokens.data_ptr<int64_t>();
  int64_t* tt = thinking_tokens.data_ptr<int64_t>();
  int64_t* mk = marker_tokens.data_ptr<int64_t>();
  int64_t* st = steps.data_ptr<int64_t>();
  bool* think = in_think.data_ptr<bool>();
  bool* brk = braking.data_ptr<bool>();
  bool* brkd = braked.data_ptr<bool>();
  int64_t* reason = brake_reason.data_ptr<int64_t>();
  int64_t* ac = ac_state.data_ptr<int64_t>();
  int64_t* cu = counted_until.data_ptr<int64_t>();
  int64_t* pos = brake_pos.data_ptr<int64_t>();
  const int32_t* cls_of = token_class.data_ptr<int32_t>();
  const int32_t* trans = transitions.data_ptr<int32_t>();
  const int32_t* mlen = match_len.data_ptr<int32_t>();
  int64_t* ds = delim_state.data_ptr<int64_t>();
  const uint8_t* step_cls = step_class.data_ptr<uint8_t>();
  const int32_t* step_tab = step_table.data_ptr<int32_t>();
  const int64_t* forced_ids = brake_ids.data_ptr<int64_t>();
  const int64_t* max_tt = max_thinking_tokens.data_ptr<int64_t>();
  const float* ratio = marker_ratio.data_ptr<float>();
  const int64_t* min_tt = min_thinking_tokens.data_ptr<int64_t>();
  const int64_t* max_st = max_steps.data_ptr<int64_t>();
  const float* margin = end_think_margin.data_ptr<float>();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "braking_step_cpu", [&] {
    scalar_t* x = logits.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t tok = last[b];
        bool th = think[b], br = brk[b];
        int64_t t = tt[b], p = pos[b];
        // Stage 1: consume.
        if (tok >= 0 && th) {
          if (!br) {
            if (tok == end_think_id) {
              th = false;
            } else {
              t += 1;
              const bool in_tab = tok < V_tab;
              const int64_t c = in_tab ? cls_of[tok] : 0;
              const int64_t s = trans[ac[b] * C + c];
              ac[b] = s;
              const int64_t L = mlen[s];
              if (L > 0) {
                mk[b] += t - std::max(cu[b], t - L);
                cu[b] = t;
              }
              // Step delimiters: a 3-state matcher, so one split across tokens counts too.
              const int32_t code = step_tab[(in_tab ? step_cls[tok] : 0) * 3 + ds[b]];
              ds[b] = code & 3;
              st[b] += code >> 2;
            }
          } else {
            p += 1;
            if (tok == end_think_id || p >= K) {
              th = false;
              br = false;
            }
          }
        }
        // Stage 2: triggers, first that holds.
        if (th && !br) {
          int64_t r = 0;
          if (max_tt[b] >= 0 && t >= max_tt[b]) {
            r = 1;
          } else if (t >= min_tt[b] && t > 0 &&
                     static_cast<double>(mk[b]) / static_cast<double>(t) >= static_cast<double>(ratio[b])) {
            r = 2;
          } else if (max_st[b] >= 0 && st[b] >= max_st[b]) {
            r = 3;
          } else if (!std::isnan(margin[b]) && row_gap(x + b * V, V, end_think_id) <= margin[b]) {
            r = 4;
          }
          if (r) {
            br = true;
            brkd[b] = true;
            reason[b] = r;
            p = 0;
          }
        }
        tt[b] = t;
        pos[b] = p;
        think[b] = th;
        brk[b] = br;
        // Stage 3: force the next brake token.
        if (br) {
          scalar_t* row = x + b * V;
          std::fill(row, row + V, static_cast<scalar_t>(kNegInf));
          row[forced_ids[std::min(p, K - 1)]] = static_cast<scalar_t>(0.0f);
        }
      }
    });
  });
}

}  // namespace mta
