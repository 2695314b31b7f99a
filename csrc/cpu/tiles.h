// The interface between the torch-facing dispatcher (attention.cpp) and the
// per-ISA tile kernels (tiles_*.cpp).
//
// Deliberately free of torch headers: the tile kernels are compiled once per
// instruction set (generic, AVX2, AVX-512), and a translation unit built for
// AVX2 must not emit inline torch functions the linker could pick for the
// whole library (an illegal instruction on an older CPU). Only plain pointers
// and sizes cross this boundary.
//
// Layout inside the kernels: one batch element at a time, rows = positions,
// every buffer zero-padded so that rows are a multiple of the block size and
// channel widths a multiple of the vector width. The right-hand operand B
// (depth x cols) of every product is stored as panels: (cols / width, depth,
// width), so a kernel walking the depth of a block reads each panel
// sequentially (the hardware prefetcher keeps up; strided rows do not).
#pragma once

#include <cstdint>

namespace sacolor::cpu {

// One batch element of the forward: o = softmax(q k^T) v row by row.
template <typename T>
struct ForwardProblem {
  const T* q;   // (n_pad, qk_pad), already multiplied by scale * log2(e)
  const T* kt;  // keys transposed (qk x m_pad), in panels: (m_pad / width, qk, width)
  const T* v;   // values (m_pad x v_pad), in panels: (v_pad / width, m_pad, width)
  T* o;         // (n, v_channels): the normalised output rows
  T* lse;       // (n,): log-sum-exp in base 2 of the scaled scores (what the backward reads)
  int64_t n, m, n_pad, m_pad, qk, qk_pad, v_channels, v_pad;
};

// One batch element of the backward. The kernel accumulates raw sums; the
// dispatcher applies `scale`: dq = scale * sum_j ds_ij k_j, dk = scale * sum_i ds_ij q_i.
template <typename T>
struct BackwardProblem {
  // "in panels" as above: a (depth x cols) matrix stored as (cols / width, depth, width).
  const T* qt;     // queries transposed (qk x n_pad), times scale * log2(e), in panels
  const T* q;      // queries (n_pad x qk_pad), unscaled, in panels
  const T* k;      // (m_pad, qk_pad), row-major
  const T* kc;     // keys minus their mean (m_pad x qk_pad), in panels; for dq
  const T* v;      // (m_pad, v_pad), row-major: values minus their mean
  const T* dout;   // dO (n_pad x v_pad), the gradient of o, in panels
  const T* doutt;  // dO transposed (v_channels x n_pad), in panels
  const T* lse2;   // (n_pad,): log-sum-exp in base 2 (scaled scores), +inf on padding
  const T* delta;  // (n_pad,): rowsum(dO * (O - mean value))
  T* dq;           // (n_pad, qk_pad): accumulated into (+=)
  T* dk;           // (m_pad, qk_pad): written, one key block per call
  T* dv;           // (m_pad, v_pad): written, one key block per call
  int64_t n, m, n_pad, m_pad, qk, qk_pad, v_channels, v_pad;
};

// What one instruction set provides for one accumulation type.
template <typename T>
struct KernelTable {
  const char* isa;
  int64_t block_m;  // queries per block; n_pad is a multiple of it
  int64_t block_n;  // keys per block; m_pad is a multiple of it
  int64_t width;    // vector width; qk_pad and v_pad are multiples of it
  // Scratch elements one thread needs, given the padded channel widths.
  int64_t (*forward_scratch)(int64_t qk_pad, int64_t v_pad);
  int64_t (*backward_scratch)(int64_t qk_pad, int64_t v_pad);
  // Query block `block` of one batch element: writes its o rows and lse.
  void (*forward_block)(const ForwardProblem<T>& p, int64_t block, T* scratch);
  // Key block `block`: writes its dk, dv rows, adds its share of dq.
  void (*backward_block)(const BackwardProblem<T>& p, int64_t block, T* scratch);
};

// Portable C++ (auto-vectorised for the baseline ISA); always present.
const KernelTable<float>* generic_f32();
const KernelTable<double>* generic_f64();
// Compiled for AVX2 + FMA; nullptr where the compiler or target lacks them.
// Call only after checking that the CPU supports both.
const KernelTable<float>* avx2_f32();

}  // namespace sacolor::cpu
