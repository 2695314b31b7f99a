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
  T* lse;       // (n,): base-2 log-sum-exp of the scaled scores (q already holds log2(e))
  int64_t n, m, n_pad, m_pad, qk, qk_pad, v_channels, v_pad;
  int64_t task_rows;  // queries per forward_block call: a multiple of block_m (the last call may have fewer)
};

// Whether the backward's dq and dk products use pairs: when qk is at most half
// a vector, a vector holds two rows of dq, or dk's sums over two halves of its
// depth, so these products, whose other dimension is qk, take half the FMAs
// instead of running half empty. A (rows x qk) matrix X in the pair layout is
// (rows / 2, width) with element [i / 2][2 c + i % 2] = X[i, c] (zero past c =
// qk); an operand B (depth x qk) "doubled" is (depth, width) with element
// [d][l] = B[d, l / 2]. dq = dS Kc: dq in the pair layout, Kc doubled. dk =
// dS^T Q over query pairs: Q in the pair layout, and lanes 2c and 2c + 1 of
// dk's row sum the even and the odd queries of dk[., c].
inline bool backward_pairs(int64_t qk, int64_t width) { return 2 * qk <= width; }

// One batch element of the backward, on the queries the forward used (already
// times scale * log2(e)). The kernel accumulates raw sums; the dispatcher
// applies the factors: dq = scale * sum_j ds_ij k_j, dk = sum_i ds_ij q_i / log2(e).
template <typename T>
struct BackwardProblem {
  // "in panels" as above: a (depth x cols) matrix stored as (cols / width, depth, width).
  // With backward_pairs(qk, width): q and dq in the pair layout, kc doubled, dk
  // (m_pad, width) in halves (see backward_pairs).
  const T* qt;     // queries transposed (qk x n_pad), times scale * log2(e), in panels
  const T* q;      // queries (n_pad x qk_pad), times scale * log2(e), in panels
  // "in strips": an (m_pad x depth) matrix stored as (m_pad / strip, depth, strip), the
  // keys of a strip (KernelTable::strip) side by side: a product over a strip's keys as
  // rows then reads them at compile-time offsets (its rows a run-time stride apart took
  // more pointers than the integer registers hold; backward -2 %).
  const T* k;      // keys (m_pad x qk), in strips
  const T* kc;     // keys minus their mean (m_pad x qk_pad), in panels; for dq
  const T* v;      // values minus their mean (m_pad x v_channels), in strips
  const T* dout;   // dO (n_pad x v_pad), the gradient of o, in panels
  const T* doutt;  // dO transposed (v_channels x n_pad), in panels
  const T* lse2;   // (n_pad,): log-sum-exp in base 2 (scaled scores), +inf on padding
  const T* delta;  // (n_pad,): rowsum(dO * (O - mean value)), from row_dots
  T* dq;           // (n_pad, qk_pad): accumulated into (+=)
  T* dk;           // (m_pad, qk_pad): written, the call's keys
  T* dv;           // (m_pad, v_pad): written, the call's keys
  int64_t n, m, n_pad, m_pad, qk, qk_pad, v_channels, v_pad;
};

// What one instruction set provides for one accumulation type.
template <typename T>
struct KernelTable {
  const char* isa;
  int64_t block_m;  // queries per block; n_pad is a multiple of it
  int64_t block_n;  // keys per block; m_pad is a multiple of it
  int64_t width;    // vector width; qk_pad and v_pad are multiples of it
  int64_t strip;    // keys per strip of the backward's k and v (BackwardProblem); divides block_n
  // Scratch elements one thread needs, given the padded channel widths (and
  // for the forward, the queries per call).
  int64_t (*forward_scratch)(int64_t task_rows, int64_t v_pad);
  int64_t (*backward_scratch)(int64_t qk_pad, int64_t v_pad);
  // Queries [block * task_rows, +task_rows) of one batch element: writes their o rows and lse.
  void (*forward_block)(const ForwardProblem<T>& p, int64_t block, T* scratch);
  // Keys [first_key, +keys), both multiples of the strip: writes their dk, dv
  // rows, adds their share of dq.
  void (*backward_block)(const BackwardProblem<T>& p, int64_t first_key, int64_t keys, T* scratch);
  // x[i] = exp2(x[i]) with the tiles' own exp2 (benchmarks/floor.py times it).
  void (*exp2_inplace)(T* x, int64_t n);
  // out[i] = sum_d a[d, i] b[d, i] for i < cols (a multiple of the width), a and
  // b (depth x cols) in panels, summed by the same FMA chain (d = 0, 1, ...) as
  // the products: the backward's delta = rowsum(dO (O - mean value)) then equals
  // dP = dO (V - mean value)^T bit for bit where the softmax is one-hot (O = a
  // row of V), so dS = P (dP - delta) is exactly 0 there, as it should be.
  void (*row_dots)(const T* a, const T* b, int64_t depth, int64_t cols, T* out);
};

// bfloat16 operands (raw bits), float32 products and softmax: the AVX512-BF16
// path. vdpbf16ps multiplies pairs of depth neighbours, so the right-hand
// operand B (depth x cols) of every product is stored in "pair panels":
// (cols / 16, depth / 2, 16, 2), the two depth neighbours of a column side by
// side; the left-hand operand A is row-major with the depth contiguous. Every
// depth (qk2, v2, the block sizes) is a multiple of the table's depth_multiple
// (2 for vdpbf16ps, 32 for AMX), zero-padded.
using bf16_bits = uint16_t;

struct Bf16ForwardProblem {
  const bf16_bits* q;   // (n_pad, qk2), times scale * log2(e), rounded once
  const bf16_bits* kt;  // keys transposed (qk2 x m_pad), in pair panels
  const bf16_bits* v;   // values (m_pad x v_pad), in pair panels: column v_channels is
                        // 1 for the m keys (P V's column v_channels is then the row
                        // sum of the rounded P), so v_pad > v_channels; or in steps
                        // (Bf16ForwardLayout::value_step), column v_channels 0
  float* o;             // (n, v_channels), normalised
  float* lse;           // (n,): base-2 log-sum-exp
  int64_t n, m, n_pad, m_pad, qk, qk2, v_channels, v_pad;
  int64_t block_m;  // queries per forward_block call: the layout's (Bf16ForwardLayout)
  // With y (no output projection, so v_channels = C): each block also writes
  // its y = gamma * o^T + x (Bf16KernelTable::residual), x and y (v_channels,
  // n), while its o rows are in cache.
  const bf16_bits* x;
  bf16_bits* y;
  float gamma;
};

// The backward on the same rounded operands; dq comes out transposed (its
// product is Kc^T dS^T, whose right-hand side packs straight from dS^T).
struct Bf16BackwardProblem {
  const bf16_bits* qt;    // queries transposed (qk2 x n_pad), in pair panels
  const bf16_bits* q;     // queries (n_pad x qk_pad), in pair panels
  const bf16_bits* k;     // (m_pad, qk2), row-major
  const bf16_bits* kct;   // keys minus their mean, transposed: (qk_rows, m_pad), row-major
  const bf16_bits* v;     // values minus their mean (m_pad, v2), row-major
  const bf16_bits* dout;  // dO (n_pad x v_pad), in pair panels
  const bf16_bits* doutt; // dO transposed (v2 x n_pad), in pair panels
  const float* lse2;      // (n_pad,), +inf on padding
  const float* delta;     // (n_pad,)
  float* dqt;             // (qk_rows, n_pad): accumulated into (+=)
  float* dk;              // (m_pad, qk_pad): written, one key block per call
  float* dv;              // (m_pad, v_pad): written, one key block per call
  // qk_rows: qk rounded up to the table's row_multiple (zero rows of kct).
  int64_t n, m, n_pad, m_pad, qk_rows, qk2, qk_pad, v_channels, v2, v_pad;
};

// How a table's forward wants its operands, for given qk and v_channels, n
// queries and the threads that share them.
struct Bf16ForwardLayout {
  // Queries per forward_block call; the forward's n_pad is a multiple of it
  // (a multiple of block_m).
  int64_t block_m;
  // The values: 0, in pair panels with the ones column; else in steps of that
  // many keys, (m_pad / step, v_pad / width, step / 2, width, 2), the pair
  // panels of a step's keys side by side (a product over a step's keys then
  // reads them from one place, not from v_pad / width panels m_pad * width
  // apart), without the ones column: the kernel sums its rows itself.
  int64_t value_step;
  // Whether row qk of the keys (qk < qk2) is 1 for the m keys: the kernel's
  // queries then carry each row's -shift in their column qk.
  bool shift_row;
  // Whether the table's forward_operands writes this layout's q, kt and v
  // from x (without pooling: keys are the queries' positions).
  bool operands;
};

// The forward's operands of one batch element straight from x, without
// pooling (m = n): the stacked 1x1 projection [q k v] = W x + b on the table's
// products, its float32 sums rounded once, and the rounding packed in the
// layouts of Bf16ForwardProblem (the values in steps, the keys with their
// shift row): no float32 projection in memory, and no packing pass over it.
struct Bf16OperandsProblem {
  const bf16_bits* x;  // (channels, n)
  const bf16_bits* w;  // [Wq; Wk; Wv]^T (c2 x out_pad), in pair panels; out = 2 qk + v_channels
  const float* bias;   // (out_pad,): [bq; bk; bv], 0 where absent and past out
  float q_factor;      // scale * log2(e)
  float* q_scaled;     // (n, qk): (Wq x + bq) * q_factor in float32 (the forward returns it)
  bf16_bits* q;        // (n_pad, qk2), as Bf16ForwardProblem
  bf16_bits* kt;       // (qk2 x m_pad), as Bf16ForwardProblem, with the shift row
  bf16_bits* v;        // (m_pad x v_pad), as Bf16ForwardProblem, in steps
  // c2: channels rounded up to depth_multiple (zero rows of w).
  int64_t channels, c2, n, n_pad, m_pad, qk, qk2, v_channels, v_pad, out_pad;
};

struct Bf16KernelTable {
  const char* isa;
  int64_t block_m, block_n, width;
  int64_t depth_multiple;  // qk2 and v2 are multiples of it
  int64_t row_multiple;    // the rows of dq^T (qk_rows) are a multiple of it
  // Scratch floats one thread needs.
  int64_t (*forward_scratch)(int64_t v_pad);
  Bf16ForwardLayout (*forward_layout)(int64_t qk, int64_t v_channels, int64_t n, int64_t threads);
  int64_t (*backward_scratch)();
  void (*forward_block)(const Bf16ForwardProblem& p, int64_t block, float* scratch);
  void (*backward_block)(const Bf16BackwardProblem& p, int64_t block, float* scratch);
  // y = gamma * rows^T + x for positions [i0, i1) of one batch element: rows
  // (n, c) float32, x and y (c, n) bfloat16.
  void (*residual)(const float* rows, int64_t n, int64_t c, float gamma, const bf16_bits* x, bf16_bits* y,
                   int64_t i0, int64_t i1);
  // Where a layout says `operands`: positions per forward_operands call (it
  // divides the layout's block_m and block_n), the scratch floats one thread
  // needs for it, and positions [block * operands_rows, +operands_rows) of
  // one batch element (their q; their keys and values below m_pad).
  int64_t operands_rows;
  int64_t (*operands_scratch)(int64_t c2, int64_t out_pad);
  void (*forward_operands)(const Bf16OperandsProblem& p, int64_t block, float* scratch);
};

// Compiled for AVX-512F + AVX512-BF16 (+BW), and for those + AMX-TILE and
// AMX-BF16; nullptr where the compiler lacks them.
const Bf16KernelTable* avx512bf16_kernels();
const Bf16KernelTable* amx_kernels();

// Portable C++ (auto-vectorised for the baseline ISA); always present.
const KernelTable<float>* generic_f32();
const KernelTable<double>* generic_f64();
// Compiled for AVX2 + FMA, and for AVX-512F; nullptr where the compiler or
// target lacks them. Call only after isa.h says the CPU runs them.
const KernelTable<float>* avx2_f32();
const KernelTable<float>* avx512_f32();

}  // namespace sacolor::cpu
