#include "braking_args.h"

#include <limits>

namespace mta::braking {
namespace {

void check_rows(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t rows, int64_t cols,
                const at::Tensor& logits) {
  TORCH_CHECK(t.device() == logits.device(), "braking_step: ", name, " must be on ", logits.device(), ", got ",
              t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "braking_step: ", name, " must be ", dtype, ", got ", t.scalar_type());
  const bool shape_ok = cols < 0 ? t.dim() == 1 && t.size(0) == rows
                                 : t.dim() == 2 && t.size(0) == rows && t.size(1) == cols;
  TORCH_CHECK(shape_ok, "braking_step: ", name, " must have shape [", rows, cols < 0 ? "" : ", ",
              cols < 0 ? "" : std::to_string(cols), "], got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "braking_step: ", name, " must be contiguous");
}

// Pointer to `count` elements of type T at byte `offset` of `tables`, after checking that they
// lie inside it and are aligned.
template <typename T>
const T* table_section(const at::Tensor& tables, int64_t offset, int64_t count, const char* name) {
  const int64_t nbytes = tables.numel();
  const auto size = static_cast<int64_t>(sizeof(T));
  TORCH_CHECK(count >= 0 && offset >= 0 && offset % size == 0 && offset <= nbytes &&
                  count <= (nbytes - offset) / size,
              "braking_step: malformed marker tables: ", name, " (", count, " entries at byte ", offset,
              ") outside the ", nbytes, "-byte table buffer or misaligned");
  return reinterpret_cast<const T*>(tables.data_ptr<uint8_t>() + offset);
}

}  // namespace

Batch check_args(const at::Tensor& logits, const at::Tensor& last_tokens, const at::Tensor& counters,
                 const at::Tensor& flags, const at::Tensor& tables, at::IntArrayRef table_layout,
                 const at::Tensor& config, at::DeviceType device_type) {
  TORCH_CHECK(logits.device().type() == device_type, "braking_step: logits must be a ",
              c10::DeviceTypeName(device_type), " tensor, got ", logits.device());
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous(), "braking_step: logits must be a contiguous [B, V] tensor");
  const auto dt = logits.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf,
              "braking_step: logits must be float32, bfloat16 or float16, got ", dt);
  const int64_t B = logits.size(0), V = logits.size(1);
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max(), "braking_step: batch too large: ", B);
  check_rows(last_tokens, "last_tokens", at::kLong, B, -1, logits);
  check_rows(counters, "counters", at::kLong, B, counter::kCount, logits);
  check_rows(flags, "flags", at::kBool, B, flag::kCount, logits);
  check_rows(config, "config", at::kDouble, B, config::kCount, logits);
  TORCH_CHECK(tables.device() == logits.device() && tables.scalar_type() == at::kByte && tables.dim() == 1 &&
                  tables.is_contiguous(),
              "braking_step: tables must be a contiguous uint8 [N] tensor on ", logits.device());
  TORCH_CHECK(static_cast<int64_t>(table_layout.size()) == table::kCount, "braking_step: table_layout must hold ",
              static_cast<int>(table::kCount), " entries, got ", table_layout.size());
  const int64_t vocab = table_layout[table::kVocab], states = table_layout[table::kStates];
  const int64_t classes = table_layout[table::kClasses], step_classes = table_layout[table::kStepClasses];
  const int64_t brake_len = table_layout[table::kBrakeLen], end_think_id = table_layout[table::kEndThinkId];
  TORCH_CHECK(vocab >= 0 && states >= 1 && classes >= 1 && step_classes >= 1,
              "braking_step: malformed marker tables: ", table_layout);
  TORCH_CHECK(brake_len >= 1, "braking_step: brake_ids must not be empty");
  TORCH_CHECK(end_think_id >= 0 && end_think_id < V, "braking_step: end_think_id outside the vocabulary");
  // Bounds that keep states * classes and step_classes * 3 from overflowing.
  const int64_t nbytes = tables.numel();
  TORCH_CHECK(states <= nbytes && classes <= nbytes / states && step_classes <= nbytes / 3,
              "braking_step: malformed marker tables: ", table_layout, " for a ", nbytes, "-byte table buffer");
  Tables t{};
  t.token_class = table_section<int32_t>(tables, table_layout[table::kTokenClassOffset], vocab, "token_class");
  t.transitions =
      table_section<int32_t>(tables, table_layout[table::kTransitionsOffset], states * classes, "transitions");
  t.match_len = table_section<int32_t>(tables, table_layout[table::kMatchLenOffset], states, "match_len");
  t.step_class = table_section<uint8_t>(tables, table_layout[table::kStepClassOffset], vocab, "step_class");
  t.step_table =
      table_section<int32_t>(tables, table_layout[table::kStepTableOffset], step_classes * 3, "step_table");
  t.brake_ids = table_section<int64_t>(tables, table_layout[table::kBrakeIdsOffset], brake_len, "brake_ids");
  t.vocab = vocab;
  t.states = states;
  t.classes = classes;
  t.step_classes = step_classes;
  t.brake_len = brake_len;
  t.end_think_id = end_think_id;
  return Batch{B,
               V,
               last_tokens.data_ptr<int64_t>(),
               counters.data_ptr<int64_t>(),
               flags.data_ptr<bool>(),
               config.data_ptr<double>(),
               t};
}

void check_state_values(const Batch& batch) {
  const Tables& t = batch.tables;
  for (int64_t b = 0; b < batch.rows; ++b) {
    const int64_t* c = batch.counters + b * counter::kCount;
    const bool* f = batch.flags + b * flag::kCount;
    if (!f[flag::kInThink]) continue;  // a row done thinking reads no table
    if (f[flag::kBraking]) {
      const int64_t pos = c[counter::kBrakePos];
      TORCH_CHECK_VALUE(pos >= 0 && pos < t.brake_len, "braking_step: state row ", b, " is braking at brake_pos ", pos,
                        ", outside the tables' ", t.brake_len, " forced tokens (a state carried over from other ",
                        "marker tables?)");
      continue;
    }
    const int64_t ac = c[counter::kAcState], delim = c[counter::kDelimState];
    TORCH_CHECK_VALUE(ac >= 0 && ac < t.states, "braking_step: state row ", b, " has ac_state ", ac,
                      ", outside the tables' ", t.states, " automaton states (a state carried over from other ",
                      "marker tables?)");
    TORCH_CHECK_VALUE(delim >= 0 && delim < kDelimStates, "braking_step: state row ", b, " has delim_state ", delim,
                      ", outside [0, ", kDelimStates, ")");
  }
}

}  // namespace mta::braking
