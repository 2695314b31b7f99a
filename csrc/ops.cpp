// Schemas of the private kernels behind sacolor::self_attention.
//
// The public op (sacolor/ops.py) validates inputs and dispatches by backend
// name; csrc/cpu/ implements these schemas for the CPU dispatch key. The GPU
// path is Triton (kernels/), not C++: nothing here is compiled for CUDA. A
// compiled GPU backend would implement the same schemas under its own key.

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
  // y = gamma * (Wo o + bo) + x, o = softmax(scale q k^T) v; also returns, for
  // the backward, o (B, N, v), the base-2 log-sum-exp per query (B, N) and the
  // queries the scores used, q (B, N, qk) times scale * log2(e).
  m.def(
      "self_attention_fwd(Tensor x, Tensor wq, Tensor? bq, Tensor wk, Tensor? bk, "
      "Tensor wv, Tensor? bv, Tensor? wo, Tensor? bo, Tensor gamma, int pool, float scale) "
      "-> (Tensor y, Tensor o, Tensor lse, Tensor q)");
  // The attention core's backward: from those saved q, o and lse, the keys k
  // (B, M, qk), values v (B, M, v) and dO (B, N, v), the gradients dq w.r.t.
  // the unscaled queries, dk and dv. The chain rule around the core (the
  // projections, pool, Wo, gamma) is sacolor/backends/chain.py's.
  m.def(
      "attention_bwd(Tensor q, Tensor k, Tensor v, Tensor d_o, Tensor o, Tensor lse, "
      "float scale) -> (Tensor dq, Tensor dk, Tensor dv)");
}
