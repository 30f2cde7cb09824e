// C++ unit test of the CPU braking op and its argument check, on a table small enough to
// write by hand: V = 8, one marker (token 4), token 5 a step delimiter, end_think_id 2, the
// brake text [3, 2]. The packed layout is csrc/braking_row.h's.
#include "braking_row.h"
#include "ops.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

namespace {

using namespace mta::braking;

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

template <typename T>
void put(at::Tensor& buffer, int64_t offset, const std::vector<T>& values) {
  std::memcpy(buffer.data_ptr<uint8_t>() + offset, values.data(), values.size() * sizeof(T));
}

struct PackedTables {
  at::Tensor packed;
  std::vector<int64_t> layout;
};

PackedTables small_tables() {
  std::vector<int64_t> layout(table::kCount);
  layout[table::kVocab] = 8;
  layout[table::kStates] = 2;  // root, "4"
  layout[table::kClasses] = 2;  // other tokens, token 4
  layout[table::kStepClasses] = 2;
  layout[table::kBrakeLen] = 2;
  layout[table::kEndThinkId] = 2;
  layout[table::kTokenClassOffset] = 0;   // int32 [8]
  layout[table::kTransitionsOffset] = 32; // int32 [2, 2]
  layout[table::kMatchLenOffset] = 48;    // int32 [2]
  layout[table::kStepClassOffset] = 56;   // uint8 [8]
  layout[table::kStepTableOffset] = 64;   // int32 [2, 3]
  layout[table::kBrakeIdsOffset] = 88;    // int64 [2]
  at::Tensor packed = at::zeros({104}, at::kByte);
  put<int32_t>(packed, 0, {0, 0, 0, 0, 1, 0, 0, 0});
  put<int32_t>(packed, 32, {0, 1, 0, 1});  // both states: class 1 -> state 1, class 0 -> root
  put<int32_t>(packed, 48, {0, 1});
  put<uint8_t>(packed, 56, {0, 0, 0, 0, 0, 1, 0, 0});
  put<int32_t>(packed, 64, {0, 0, 0, 4, 4, 4});  // class 1 completes one delimiter
  put<int64_t>(packed, 88, {3, 2});
  return {packed, layout};
}

}  // namespace

int main() {
  const PackedTables t = small_tables();
  const int64_t B = 2;
  at::Tensor counters = at::zeros({B, counter::kCount}, at::kLong);
  at::Tensor flags = at::zeros({B, flag::kCount}, at::kBool);
  flags.select(1, flag::kInThink).fill_(true);
  // Row 0: budget 0 (brakes at once); row 1: no trigger.
  at::Tensor config = at::full({B, config::kCount}, NAN, at::kDouble);
  config.select(1, config::kMaxThinkingTokens).copy_(at::tensor({0.0, -1.0}, at::kDouble));
  config.select(1, config::kMinThinkingTokens).fill_(0.0);
  config.select(1, config::kMaxSteps).fill_(-1.0);

  at::Tensor logits = at::zeros({B, 8}, at::kFloat);
  mta::braking_step_cpu(logits, at::tensor({-1, -1}, at::kLong), counters, flags, t.packed, t.layout, config);
  expect(counters[0][counter::kBrakeReason].item<int64_t>() == static_cast<int64_t>(BrakeReason::kBudget),
         "budget 0 brakes at once");
  expect(logits[0][3].item<float>() == 0.0f && logits[0].isinf().sum().item<int64_t>() == 7,
         "a braking row forces the first brake token");
  expect(logits[1].eq(0).all().item<bool>(), "a row without a trigger is untouched");

  // Row 1 consumes the marker, then the step delimiter; row 0 consumes its forced token.
  mta::braking_step_cpu(logits.zero_(), at::tensor({3, 4}, at::kLong), counters, flags, t.packed, t.layout, config);
  mta::braking_step_cpu(logits.zero_(), at::tensor({2, 5}, at::kLong), counters, flags, t.packed, t.layout, config);
  expect(counters[1][counter::kThinkingTokens].item<int64_t>() == 2 &&
             counters[1][counter::kMarkerTokens].item<int64_t>() == 1 &&
             counters[1][counter::kSteps].item<int64_t>() == 1,
         "thinking, marker and step counters");
  expect(!flags[0][flag::kInThink].item<bool>() && !flags[0][flag::kBraking].item<bool>() &&
             flags[0][flag::kBraked].item<bool>(),
         "consuming end_think_id ends braking and thinking");
  expect(logits.eq(0).all().item<bool>(), "rows done thinking are untouched");

  // Malformed arguments raise instead of reading out of bounds.
  std::vector<int64_t> outside = t.layout;
  outside[table::kBrakeIdsOffset] = 104;
  bool raised = false;
  try {
    mta::braking_step_cpu(logits, at::tensor({-1, -1}, at::kLong), counters, flags, t.packed, outside, config);
  } catch (const c10::Error&) {
    raised = true;
  }
  expect(raised, "a table outside the buffer raises");
  raised = false;
  try {
    mta::braking_step_cpu(logits, at::tensor({-1, -1}, at::kLong), counters.narrow(1, 0, 4).contiguous(), flags,
                          t.packed, t.layout, config);
  } catch (const c10::Error&) {
    raised = true;
  }
  expect(raised, "counters of the wrong width raise");

  // A state value outside the tables (a state carried over from larger ones) raises a
  // ValueError naming the field instead of indexing the transition table with it.
  at::Tensor carried = at::zeros({B, counter::kCount}, at::kLong);
  carried.select(1, counter::kAcState).fill_(5);  // the tables have 2 states
  at::Tensor thinking = at::zeros({B, flag::kCount}, at::kBool);
  thinking.select(1, flag::kInThink).fill_(true);
  bool named = false;
  try {
    mta::braking_step_cpu(logits, at::tensor({4, 4}, at::kLong), carried, thinking, t.packed, t.layout, config);
  } catch (const c10::ValueError& e) {
    named = std::strstr(e.what(), "ac_state 5") != nullptr;
  }
  expect(named, "an ac_state outside the tables raises a ValueError naming it");

  if (failures == 0) std::printf("braking_cpu: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
