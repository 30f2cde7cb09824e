// The one place where mta ops are declared (schemas) and their C++ bodies registered.
// Fake (meta) implementations are registered from Python (mta_kernels/_ops.py), so the ops
// trace under torch.compile without running a kernel.
#include "ops.h"

#include <torch/library.h>

TORCH_LIBRARY(mta, m) {
  m.def(
      "filter_logits(Tensor logits, Tensor temperature, Tensor top_k, Tensor top_p, "
      "Tensor min_p) -> Tensor");
  m.def(
      "sample(Tensor logits, Tensor temperature, Tensor top_k, Tensor top_p, Tensor min_p, "
      "Tensor uniform) -> (Tensor, Tensor)");
  m.def(
      "mix_and_sample(Tensor[] logits, Tensor weights, Tensor temperature, Tensor plausibility, "
      "Tensor top_k, Tensor top_p, Tensor min_p, Tensor uniform) -> (Tensor, Tensor)");
  // Packed layout of counters, flags, tables / table_layout and config: csrc/braking_row.h.
  m.def(
      "braking_step(Tensor(a!) logits, Tensor last_tokens, Tensor(b!) counters, Tensor(c!) flags, "
      "Tensor tables, int[] table_layout, Tensor config) -> ()");
}

TORCH_LIBRARY_IMPL(mta, CPU, m) {
  m.impl("filter_logits", &mta::filter_logits_cpu);
  m.impl("sample", &mta::sample_cpu);
  m.impl("mix_and_sample", &mta::mix_and_sample_cpu);
  m.impl("braking_step", &mta::braking_step_cpu);
}

#ifdef MTA_WITH_CUDA
TORCH_LIBRARY_IMPL(mta, CUDA, m) {
  m.impl("filter_logits", &mta::filter_logits_cuda);
  m.impl("sample", &mta::sample_cuda);
  m.impl("braking_step", &mta::braking_step_cuda);
}
#endif

#ifndef MTA_NO_PYTHON_MODULE
// Lets the library also be imported as a Python module (python -c "import mta_kernels._C"),
// although it is normally loaded with torch.ops.load_library. The CMake build for C++ tests
// leaves it out so that it needs no libpython.
#include <Python.h>
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
#endif
