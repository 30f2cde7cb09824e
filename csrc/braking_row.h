// The braking step of one row (Self-Braking Tuning), written once for the CPU op
// (csrc/cpu/braking.cpp) and the CUDA kernel (csrc/cuda/braking.cu): the packed layout of
// the op's arguments, the brake reasons, and the consume / decide / force routines.
//
// The rules are those of mta_kernels/braking/reference.py (its module docstring), which the
// tests hold both backends against. Only the row max of the margin trigger is left to the
// callers: the CPU vectorises it over one row, the GPU reduces it over a thread block.
//
// Packed layout (mta_kernels/braking/layout.py names the same fields in the same order; a
// test compares the two):
//   counters [B, counter::kCount] int64   per-row counters and automaton state
//   flags    [B, flag::kCount]    bool    per-row phase flags
//   config   [B, config::kCount]  float64 triggers; integer ones hold integers (negative:
//                                         off), marker_ratio its fp64 threshold and
//                                         end_think_margin its fp32 value (NaN: off)
//   tables   [N] uint8 with table_layout int[table::kCount]: sizes, end_think_id and the
//            byte offset of each table in `tables` (aligned to its element size)
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MTA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MTA_HOST_DEVICE inline
#endif

namespace mta::braking {

namespace counter {
enum : int {
  kThinkingTokens,  // thinking tokens consumed (the closing tag is not one)
  kMarkerTokens,    // thinking tokens covered by at least one marker occurrence
  kSteps,           // step delimiters seen
  kBrakeReason,     // a BrakeReason
  kAcState,         // Aho-Corasick automaton state
  kCountedUntil,    // position up to which marker tokens are counted
  kBrakePos,        // index of the next forced token
  kDelimState,      // step-delimiter matcher state (0 after text, 1 after a newline, 2 in a break)
  kCount
};
}  // namespace counter

namespace flag {
enum : int { kInThink, kBraking, kBraked, kCount };
}  // namespace flag

namespace config {
enum : int { kMaxThinkingTokens, kMarkerRatio, kMinThinkingTokens, kMaxSteps, kEndThinkMargin, kCount };
}  // namespace config

namespace table {
enum : int {
  kVocab,        // V_tab: entries of token_class and step_class
  kStates,       // S: automaton states
  kClasses,      // C: token classes
  kStepClasses,  // NS: rows of step_table
  kBrakeLen,     // K: forced tokens
  kEndThinkId,
  kTokenClassOffset,   // int32 [V_tab]
  kTransitionsOffset,  // int32 [S, C]
  kMatchLenOffset,     // int32 [S]
  kStepClassOffset,    // uint8 [V_tab]
  kStepTableOffset,    // int32 [NS, 3]: next delimiter state + 4 * delimiters completed
  kBrakeIdsOffset,     // int64 [K], ending with end_think_id
  kCount
};
}  // namespace table

// delim_state at the start of thinking ("inside a break"); mta_kernels.braking.DELIM_START.
constexpr int64_t kDelimStart = 2;
constexpr int64_t kDelimStates = 3;

// brake_reason values; mta_kernels.braking.BRAKE_REASONS names them.
enum class BrakeReason : int64_t { kNone = 0, kBudget = 1, kMarkerRatio = 2, kSteps = 3, kMargin = 4 };

// What a row needs after its counters are decided.
enum class RowAction : int {
  kUntouched,   // leave the logits row alone
  kCheckMargin, // the margin trigger decides: read the row max, then call decide_margin
  kForce,       // braking: -inf everywhere but the next forced token
};

// The marker tables, typed views into the packed `tables` buffer.
struct Tables {
  const int32_t* token_class;
  const int32_t* transitions;
  const int32_t* match_len;
  const uint8_t* step_class;
  const int32_t* step_table;
  const int64_t* brake_ids;
  int64_t vocab, states, classes, step_classes, brake_len, end_think_id;
};

// `i` when it indexes a table of `n` entries, else `fallback`. Every index the row routine
// reads from a tensor goes through this: the state values are checked on the host before a
// call (check_state_values on the CPU, BrakingState.ensure_fits before any launch) and
// MarkerTables checks its contents when built, so on valid input this never changes a
// value; it keeps a value that got past those checks (a state edited in place on the GPU,
// where checking every step would cost a host sync) from reading out of bounds.
MTA_HOST_DEVICE int64_t index_or(int64_t i, int64_t n, int64_t fallback) { return i >= 0 && i < n ? i : fallback; }

MTA_HOST_DEVICE bool is_nan(double x) {
#if defined(__CUDA_ARCH__)
  return isnan(x);
#else
  return std::isnan(x);
#endif
}

// Stage 1: consume the token sampled at the previous step (negative: nothing to consume).
MTA_HOST_DEVICE void consume_token(int64_t token, int64_t* c, bool* f, const Tables& t) {
  if (token < 0 || !f[flag::kInThink]) return;
  if (f[flag::kBraking]) {
    const int64_t pos = index_or(c[counter::kBrakePos], t.brake_len, t.brake_len - 1) + 1;
    c[counter::kBrakePos] = pos;
    if (token == t.end_think_id || pos >= t.brake_len) {
      f[flag::kInThink] = false;
      f[flag::kBraking] = false;
    }
    return;
  }
  if (token == t.end_think_id) {  // thinking ends naturally; the tag is no thinking token
    f[flag::kInThink] = false;
    return;
  }
  const int64_t pos = ++c[counter::kThinkingTokens];
  const bool in_tables = token < t.vocab;  // tokens past the class map are class 0
  const int64_t cls = in_tables ? index_or(t.token_class[token], t.classes, 0) : 0;
  const int64_t from = index_or(c[counter::kAcState], t.states, 0);
  const int64_t state = index_or(t.transitions[from * t.classes + cls], t.states, 0);
  c[counter::kAcState] = state;
  const int64_t longest = t.match_len[state];
  if (longest > 0) {
    // Every marker ending here is a suffix of the longest: count the tokens it covers
    // that no earlier occurrence did.
    const int64_t counted = c[counter::kCountedUntil];
    c[counter::kMarkerTokens] += pos - (counted > pos - longest ? counted : pos - longest);
    c[counter::kCountedUntil] = pos;
  }
  // Step delimiters: a 3-state matcher, so one split across tokens counts too.
  const int64_t step_cls = in_tables ? index_or(t.step_class[token], t.step_classes, 0) : 0;
  const int64_t delim = index_or(c[counter::kDelimState], kDelimStates, kDelimStart);
  const int32_t code = t.step_table[step_cls * kDelimStates + delim];
  c[counter::kDelimState] = code & 3;
  c[counter::kSteps] += code >> 2;
}

MTA_HOST_DEVICE RowAction start_braking(int64_t* c, bool* f, BrakeReason reason) {
  f[flag::kBraking] = true;
  f[flag::kBraked] = true;
  c[counter::kBrakeReason] = static_cast<int64_t>(reason);
  c[counter::kBrakePos] = 0;
  return RowAction::kForce;
}

// Stages 1 and 2 up to the margin: consume, then the counter triggers in the order budget,
// marker ratio, steps (the first that holds starts braking).
MTA_HOST_DEVICE RowAction consume_and_decide(int64_t token, int64_t* c, bool* f, const double* cfg,
                                             const Tables& t) {
  consume_token(token, c, f, t);
  if (f[flag::kBraking]) return RowAction::kForce;
  if (!f[flag::kInThink]) return RowAction::kUntouched;
  const int64_t tokens = c[counter::kThinkingTokens];
  const double budget = cfg[config::kMaxThinkingTokens];
  if (budget >= 0 && static_cast<double>(tokens) >= budget) return start_braking(c, f, BrakeReason::kBudget);
  // marker / thinking in fp64, correctly rounded: a ratio equal to the threshold's decimal
  // value reaches it (6 / 20 >= 0.3, which fp32 missed). A NaN or inf threshold never holds.
  if (static_cast<double>(tokens) >= cfg[config::kMinThinkingTokens] && tokens > 0 &&
      static_cast<double>(c[counter::kMarkerTokens]) / static_cast<double>(tokens) >= cfg[config::kMarkerRatio]) {
    return start_braking(c, f, BrakeReason::kMarkerRatio);
  }
  const double max_steps = cfg[config::kMaxSteps];
  if (max_steps >= 0 && static_cast<double>(c[counter::kSteps]) >= max_steps) {
    return start_braking(c, f, BrakeReason::kSteps);
  }
  return is_nan(cfg[config::kEndThinkMargin]) ? RowAction::kUntouched : RowAction::kCheckMargin;
}

// Stage 2, the margin trigger, after kCheckMargin: max log p - log p(end) = max z - z[end]
// (the log-softmax normaliser cancels). NaN logits count as -inf; the gap is an fp32
// difference, compared with the margin's fp32 value.
MTA_HOST_DEVICE RowAction decide_margin(float row_max, float end_logit, int64_t* c, bool* f, const double* cfg) {
  const float gap = row_max - (is_nan(end_logit) ? -INFINITY : end_logit);
  if (static_cast<double>(gap) <= cfg[config::kEndThinkMargin]) return start_braking(c, f, BrakeReason::kMargin);
  return RowAction::kUntouched;
}

// Stage 3: the token a braking row is forced to, a column of its `vocab`-wide logits row
// (an id outside it, possible only with hand-built tables, forces end_think_id instead).
MTA_HOST_DEVICE int64_t forced_token(const int64_t* c, const Tables& t, int64_t vocab) {
  const int64_t pos = c[counter::kBrakePos];
  const int64_t id = t.brake_ids[pos < 0 ? 0 : pos < t.brake_len - 1 ? pos : t.brake_len - 1];
  return index_or(id, vocab, t.end_think_id);
}

}  // namespace mta::braking
