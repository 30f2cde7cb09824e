// The one host-side check of mta::braking_step's arguments, shared by the CPU op and the
// CUDA launcher: every shape, dtype, device and table bound the row routine relies on, so
// a bad call raises instead of reading out of bounds.
#pragma once

#include "braking_row.h"

#include <torch/all.h>

namespace mta::braking {

// Checked raw pointers of one call (device pointers for CUDA tensors).
struct Batch {
  int64_t rows, vocab;
  const int64_t* last_tokens;  // [rows]
  int64_t* counters;           // [rows, counter::kCount]
  bool* flags;                 // [rows, flag::kCount]
  const double* config;        // [rows, config::kCount]
  Tables tables;
};

// Raises (TORCH_CHECK) unless every tensor is contiguous and on `device_type`, the shapes and
// dtypes follow braking_row.h, and every table of `table_layout` lies inside `tables`.
Batch check_args(const at::Tensor& logits, const at::Tensor& last_tokens, const at::Tensor& counters,
                 const at::Tensor& flags, const at::Tensor& tables, at::IntArrayRef table_layout,
                 const at::Tensor& config, at::DeviceType device_type);

// Raises (a ValueError in Python) unless every row still thinking holds state values that
// index `batch.tables`: ac_state and delim_state for a row thinking, brake_pos for a row
// braking. Reads the state, so host (CPU) tensors only; on the GPU the row routine clamps
// instead (braking_row.h's index_or) and the Python layer checks before a launch.
void check_state_values(const Batch& batch);

}  // namespace mta::braking
