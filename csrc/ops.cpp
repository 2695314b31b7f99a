// Schemas of the private kernels behind sacolor::self_attention.
//
// The public op (sacolor/ops.py) validates inputs and dispatches by backend
// name; these schemas are what the compiled backends implement: csrc/cpu/ for
// the CPU dispatch key, csrc/cuda/ for CUDA. Absent optional inputs produce
// empty (numel 0) gradients so the return types stay fixed.

#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing sacolor._C only has to load this library so the registrations
// below run; it exposes no Python functions.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(sacolor_C, m) {
  // y = gamma * (Wo o + bo) + x, o = softmax(scale q k^T) v; also returns o
  // (B, N, v) and the base-2 log-sum-exp per query (B, N) for the backward.
  m.def(
      "self_attention_fwd(Tensor x, Tensor wq, Tensor? bq, Tensor wk, Tensor? bk, "
      "Tensor wv, Tensor? bv, Tensor? wo, Tensor? bo, Tensor gamma, int pool, float scale) "
      "-> (Tensor y, Tensor o, Tensor lse)");
  m.def(
      "self_attention_bwd(Tensor dy, Tensor x, Tensor wq, Tensor? bq, Tensor wk, Tensor? bk, "
      "Tensor wv, Tensor? bv, Tensor? wo, Tensor? bo, Tensor gamma, Tensor o, Tensor lse, "
      "int pool, float scale) "
      "-> (Tensor dx, Tensor dwq, Tensor dbq, Tensor dwk, Tensor dbk, Tensor dwv, Tensor dbv, "
      "Tensor dwo, Tensor dbo, Tensor dgamma)");
}
