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
  m.def(
      "braking_step(Tensor(a!) logits, Tensor last_tokens, Tensor(b!) thinking_tokens, "
      "Tensor(c!) marker_tokens, Tensor(d!) steps, Tensor(e!) in_think, Tensor(f!) braking, "
      "Tensor(g!) braked, Tensor(h!) brake_reason, Tensor(i!) ac_state, "
      "Tensor(j!) counted_until, Tensor(k!) brake_pos, Tensor(l!) delim_state, "
      "Tensor token_class, Tensor transitions, Tensor match_len, Tensor step_class, "
      "Tensor step_table, Tensor brake_ids, "
      "int end_think_id, Tensor max_thinking_tokens, Tensor marker_ratio, "
      "Tensor min_thinking_tokens, Tensor max_steps, Tensor end_think_margin) -> ()");
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
