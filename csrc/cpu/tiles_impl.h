// The flash-style tile kernels, written once against a small vector type
// `Vec` (see vec_generic.h, vec_avx2.h) and instantiated by each
// tiles_<isa>.cpp inside its own namespace.
//
// Every matrix product here has the form C (rows x cols) (+)= A (rows x depth) B
// (depth x cols): B stored as panels (see tiles.h), A read by broadcasts
// through arbitrary strides (so A may be a transposed view), C row-major, its
// tiles held in registers across the whole depth. The forward walks key
// blocks for one query block with an online softmax (running max m, running
// sum l, rescaling o only when m moves); the backward walks query blocks for
// one key block, recomputing the probabilities from the saved log-sum-exp.
// Scores are kept in base 2 (queries pre-multiplied by log2(e)) so the
// exponential is a plain exp2.
//
// Include only after a vector type and SACOLOR_TILES_NAMESPACE are defined.

#include "tiles.h"

namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE {

// The most C rows a register tile holds for `col_vectors` vectors per row:
// accumulators + one B row + one broadcast fit in the register file (16 rows
// at most: 8 with 16 registers, as before AVX-512's 32).
template <class Vec>
constexpr int max_rows(int col_vectors) {
  const int rows = (Vec::registers - col_vectors - 1) / col_vectors;
  return rows < Vec::registers / 2 ? rows : Vec::registers / 2;
}

// C[rows x (CV * width)] (+)= A B over `depth`; A[r, d] = a[r * a_rs + d * a_cs],
// B[d, j * width + lane] = b[j * b_ps + d * width + lane] (CV panels, b_ps apart).
// ACCUMULATE is a template parameter so that the accumulators of C = A B start
// as zero registers, not as a run-time choice the compiler spills to the stack.
// ARS > 0: A's row stride is
// ARS, known at compile time (a_rs must equal it): every broadcast of a depth
// step is then one pointer plus a constant, where a run-time stride takes a
// pointer per row, more than the integer registers hold (the spills made an
// AVX2 tile of 6 rows and one vector 2.6x slower). Each vector of C passes
// through `out` (out(value, row, col) -> what is stored; row and col relative
// to the tile) on its way to memory.
template <class Vec, int ROWS, int CV, bool ACCUMULATE, int64_t ARS, class Out>
inline void gemm_tile_body(int64_t depth, const typename Vec::T* a, int64_t a_rs, int64_t a_cs,
                           const typename Vec::T* b, int64_t b_ps, typename Vec::T* c,
                           int64_t ldc, const Out& out) {
  constexpr int W = Vec::width;
  const int64_t rs = ARS > 0 ? ARS : a_rs;
  // Every caller has depth >= 1; saying so keeps GCC from also building a
  // depth-0 path that holds the accumulators on the stack.
  if (depth < 1) __builtin_unreachable();
  Vec acc[ROWS][CV];
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < CV; ++j)
      acc[r][j] = ACCUMULATE ? Vec::load(c + r * ldc + j * W) : Vec::zero();
  for (int64_t d = 0; d < depth; ++d) {
    Vec brow[CV];
    for (int j = 0; j < CV; ++j) brow[j] = Vec::load(b + j * b_ps + d * W);
    for (int r = 0; r < ROWS; ++r) {
      const Vec ar = Vec::broadcast(a[r * rs + d * a_cs]);
      for (int j = 0; j < CV; ++j) acc[r][j] = Vec::fmadd(ar, brow[j], acc[r][j]);
    }
  }
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < CV; ++j) out(acc[r][j], r, j * W).store(c + r * ldc + j * W);
}

// What gemm stores by default: C itself.
struct StoreAsIs {
  template <class Vec>
  Vec operator()(Vec value, int64_t /*row*/, int64_t /*col*/) const {
    return value;
  }
};

template <class Vec, int ROWS, int CV, int64_t ARS, class Out>
inline void gemm_tile(int64_t depth, const typename Vec::T* a, int64_t a_rs, int64_t a_cs,
                      const typename Vec::T* b, int64_t b_ps, typename Vec::T* c, int64_t ldc,
                      bool accumulate, const Out& out) {
  if (accumulate)
    gemm_tile_body<Vec, ROWS, CV, true, ARS>(depth, a, a_rs, a_cs, b, b_ps, c, ldc, out);
  else
    gemm_tile_body<Vec, ROWS, CV, false, ARS>(depth, a, a_rs, a_cs, b, b_ps, c, ldc, out);
}

// The last rows % max_rows rows: picks the tile height at run time.
template <class Vec, int CV, int64_t ARS, class Out, int ROWS = max_rows<Vec>(CV)>
inline void gemm_tail(int64_t rows, int64_t depth, const typename Vec::T* a, int64_t a_rs,
                      int64_t a_cs, const typename Vec::T* b, int64_t b_ps, typename Vec::T* c,
                      int64_t ldc, bool accumulate, const Out& out) {
  if constexpr (ROWS > 0) {
    if (rows == ROWS) {
      gemm_tile<Vec, ROWS, CV, ARS>(depth, a, a_rs, a_cs, b, b_ps, c, ldc, accumulate, out);
    } else {
      gemm_tail<Vec, CV, ARS, Out, ROWS - 1>(rows, depth, a, a_rs, a_cs, b, b_ps, c, ldc,
                                                 accumulate, out);
    }
  }
}

// `out` sees rows and columns relative to the group (col_base: the group's first column).
template <class Out>
struct Shifted {
  const Out& out;
  int64_t row_base, col_base;
  template <class Vec>
  Vec operator()(Vec value, int64_t row, int64_t col) const {
    return out(value, row_base + row, col_base + col);
  }
};

template <class Vec, int CV, int64_t ARS = 0, class Out = StoreAsIs>
inline void gemm_column_group(int64_t rows, int64_t depth, const typename Vec::T* a, int64_t a_rs,
                              int64_t a_cs, const typename Vec::T* b, int64_t b_ps,
                              typename Vec::T* c, int64_t ldc, bool accumulate,
                              const Out& out = Out(), int64_t col_base = 0) {
  constexpr int R = max_rows<Vec>(CV);
  int64_t r = 0;
  for (; r + R <= rows; r += R)
    gemm_tile<Vec, R, CV, ARS>(depth, a + r * a_rs, a_rs, a_cs, b, b_ps, c + r * ldc, ldc,
                                   accumulate, Shifted<Out>{out, r, col_base});
  if (r < rows)
    gemm_tail<Vec, CV, ARS>(rows - r, depth, a + r * a_rs, a_rs, a_cs, b, b_ps, c + r * ldc,
                                ldc, accumulate, Shifted<Out>{out, r, col_base});
}

// C (+)= A B; cols is a multiple of the vector width, B panels are b_ps apart.
// Column groups outermost so their B panels stay in L1 while every row tile
// streams past them.
template <class Vec, int64_t ARS = 0, class Out = StoreAsIs>
void gemm(int64_t rows, int64_t cols, int64_t depth, const typename Vec::T* a, int64_t a_rs,
          int64_t a_cs, const typename Vec::T* b, int64_t b_ps, typename Vec::T* c, int64_t ldc,
          bool accumulate, const Out& out = Out()) {
  constexpr int W = Vec::width;
  int64_t col = 0;
  for (; col + 2 * W <= cols; col += 2 * W)
    gemm_column_group<Vec, 2, ARS>(rows, depth, a, a_rs, a_cs, b + col / W * b_ps, b_ps,
                                      c + col, ldc, accumulate, out, col);
  if (col < cols)
    gemm_column_group<Vec, 1, ARS>(rows, depth, a, a_rs, a_cs, b + col / W * b_ps, b_ps,
                                      c + col, ldc, accumulate, out, col);
}

// The largest of row[0, len), or `floor` itself when no entry exceeds it (nor
// is NaN): the online softmax's running max (`floor`) then stays either way,
// and the horizontal reduction, most of the work on a row of 112, is skipped.
template <class Vec>
typename Vec::T row_max(const typename Vec::T* row, int64_t len, typename Vec::T floor) {
  Vec m = Vec::load(row);
  for (int64_t j = Vec::width; j < len; j += Vec::width) m = Vec::max(m, Vec::load(row + j));
  return m.any_above(floor) ? m.reduce_max() : floor;
}

// row[j] = exp2(row[j] - shift), added lane by lane into the row's running sum
// (`sum`, one vector: reduced once, when the output is written).
template <class Vec>
void exp2_row(typename Vec::T* row, int64_t len, typename Vec::T shift, typename Vec::T* sum) {
  const Vec s = Vec::broadcast(shift);
  Vec total = Vec::load(sum);
  for (int64_t j = 0; j < len; j += Vec::width) {
    const Vec p = Vec::exp2(Vec::load(row + j) - s);
    p.store(row + j);
    total = total + p;
  }
  total.store(sum);
}

template <typename T>
inline T finite_or_zero_max(T m) {
  // A row whose scores so far are all -inf shifts by 0, not by -inf (which
  // would turn exp2(-inf - -inf) into NaN); NaN and +inf still propagate.
  return m == -__builtin_inf() ? T(0) : m;
}

// The online softmax's state for `rows` query rows: running max (base 2), the
// running sum, the unnormalised output (rows x v_pad). The sum is either one
// vector of partial sums per row (run_sum, reduced once, at the end) or,
// where the output product computes it (a column of ones in V), column
// sum_column of the output.
template <class Vec>
struct SoftmaxRows {
  using T = typename Vec::T;
  T* run_max;  // (rows,)
  T* run_sum;  // (rows, width), unused with a sum column
  T* acc;      // (rows, v_pad)
  int64_t v_pad;
  int64_t sum_column;  // -1: the sums are run_sum's

  static int64_t scratch(int64_t rows, int64_t v_pad) { return rows * (1 + Vec::width + v_pad); }
  static SoftmaxRows start(T* scratch, int64_t rows, int64_t v_pad, int64_t sum_column = -1) {
    SoftmaxRows st{scratch, scratch + rows, scratch + rows * (1 + Vec::width), v_pad, sum_column};
    for (int64_t i = 0; i < rows; ++i) st.run_max[i] = -__builtin_inf();
    for (int64_t i = 0; i < rows * (Vec::width + v_pad); ++i) st.run_sum[i] = T(0);
    return st;
  }
  T* sum(int64_t i) const { return run_sum + i * Vec::width; }
  T row_sum(int64_t i) const {
    return sum_column < 0 ? Vec::load(sum(i)).reduce_sum() : acc[i * v_pad + sum_column];
  }

  // Row i meets a key block whose largest score is block_max: moves the
  // running max, rescales the row's sum and output when it moves, and returns
  // the shift the block's scores take before exp2.
  T advance(int64_t i, T block_max) const {
    const T old_max = run_max[i];
    const T new_max = block_max > old_max ? block_max : old_max;
    const T shift = finite_or_zero_max(new_max);
    if (new_max != old_max) {
      const Vec scale = Vec::broadcast(Vec::exp2_scalar(old_max - shift));
      if (sum_column < 0) (Vec::load(sum(i)) * scale).store(sum(i));
      T* acc_row = acc + i * v_pad;
      for (int64_t c = 0; c < v_pad; c += Vec::width) (Vec::load(acc_row + c) * scale).store(acc_row + c);
    }
    run_max[i] = new_max;
    return shift;
  }

  // The last step for the first `rows`: o = acc / l (v_channels of each
  // v_pad-wide row, the tail by a masked store) and the base-2 log-sum-exp.
  void write(int64_t rows, T* o, int64_t v_channels, T* lse) const {
    constexpr int W = Vec::width;
    for (int64_t i = 0; i < rows; ++i) {
      const T l = row_sum(i);
      const Vec inv_l = Vec::broadcast(T(1) / l);
      const T* acc_row = acc + i * v_pad;
      T* o_row = o + i * v_channels;
      int64_t c = 0;
      for (; c + W <= v_channels; c += W) (Vec::load(acc_row + c) * inv_l).store(o_row + c);
      if (c < v_channels) (Vec::load(acc_row + c) * inv_l).store_first(o_row + c, v_channels - c);
      lse[i] = finite_or_zero_max(run_max[i]) + Vec::log2_scalar(l);
    }
  }
};

// The forward works on strips of one register tile's height: a strip's scores
// (strip x BN) stay in L1 from the product that writes them through the
// softmax to the product that reads them as probabilities.
template <class Vec>
constexpr int64_t kStrip = max_rows<Vec>(2);

template <class Vec, int64_t BN>
int64_t forward_scratch(int64_t task_rows, int64_t v_pad) {
  return kStrip<Vec> * BN + SoftmaxRows<Vec>::scratch(task_rows, v_pad);
}

template <class Vec, int64_t BN>
void forward_block(const ForwardProblem<typename Vec::T>& p, int64_t block,
                   typename Vec::T* scratch) {
  using T = typename Vec::T;
  constexpr int W = Vec::width;
  constexpr int64_t SR = kStrip<Vec>;
  const int64_t i0 = block * p.task_rows;
  const int64_t count = p.n_pad - i0 < p.task_rows ? p.n_pad - i0 : p.task_rows;
  T* s = scratch;  // (SR, BN) scores, then probabilities
  const SoftmaxRows<Vec> st = SoftmaxRows<Vec>::start(s + SR * BN, count, p.v_pad);
  // Strips wholly of padded queries (never written out) and the padded keys of
  // the last block, past the vector that holds its last key, are skipped: their
  // probabilities are 0 (1 % of the work at 128x128, n_pad = m_pad = 16 464).
  const int64_t live = p.n - i0 < count ? p.n - i0 : count;
  for (int64_t j0 = 0; j0 < p.m_pad; j0 += BN) {
    const int64_t valid = p.m - j0 < BN ? p.m - j0 : BN;
    const int64_t cols = (valid + W - 1) / W * W;
    for (int64_t r0 = 0; r0 < live; r0 += SR) {
      const int64_t rows = count - r0 < SR ? count - r0 : SR;
      gemm<Vec>(rows, cols, p.qk, p.q + (i0 + r0) * p.qk_pad, p.qk_pad, 1, p.kt + j0 * p.qk,
                p.qk * W, s, BN, false);
      for (int64_t i = 0; i < rows; ++i) {
        T* row = s + i * BN;
        for (int64_t j = valid; j < cols; ++j) row[j] = -__builtin_inf();
        exp2_row<Vec>(row, cols, st.advance(r0 + i, row_max<Vec>(row, cols, st.run_max[r0 + i])),
                      st.sum(r0 + i));
      }
      gemm<Vec, BN>(rows, p.v_pad, valid, s, BN, 1, p.v + j0 * W, p.m_pad * W,
                    st.acc + r0 * p.v_pad, p.v_pad, true);
    }
  }
  st.write(live, p.o + i0 * p.v_channels, p.v_channels, p.lse + i0);
}

// dK += dS^T Q and dQ += dS Kc for a strip of keys as one product: both
// multiply the same broadcast of dS^T, dK's by a row of Q into key r's row,
// dQ's by key r's row of Kc into the query's row. Two layouts, where the qk
// channels take at most one vector: PAIRS (tiles.h, backward_pairs: qk at most
// half a vector) broadcasts a pair of dS^T (key r, queries 2d and 2d + 1) onto
// query pair d's rows of Q and dQ; otherwise (qk_pad = width: AVX2 at C = 64)
// one entry (key r, query d) onto query d's rows. Apart, the two products
// loaded a broadcast per FMA (and on AVX2 dK's six accumulators, one per key,
// were too few for the FMA's latency); here a broadcast feeds two FMAs, over
// register blocks of ROWS keys (their dK and Kc rows) by kQueryBlock query
// pairs or queries (their Q and dQ rows). Each sum runs in the order the two
// products had (dK's over d, dQ's over r): the same bits.
template <class Vec, bool PAIRS>
constexpr int kQueryBlock = PAIRS ? Vec::width / 2 : 1;  // divides BM, a multiple of the width
template <class Vec, bool PAIRS>
constexpr int kKeyBlock = (Vec::registers - 2 * kQueryBlock<Vec, PAIRS> - 1) / 2;

template <class Vec, bool PAIRS, int ROWS, int64_t BQ>
inline void dk_dq_body(int64_t count, const typename Vec::T* ds_t, const typename Vec::T* q,
                       const typename Vec::T* kc, typename Vec::T* dk, int64_t ldk,
                       typename Vec::T* dq) {
  constexpr int W = Vec::width, D = kQueryBlock<Vec, PAIRS>;
  Vec dk_acc[ROWS], kc_row[ROWS];
  for (int r = 0; r < ROWS; ++r) {
    dk_acc[r] = Vec::load(dk + r * ldk);
    kc_row[r] = Vec::load(kc + r * W);
  }
  for (int64_t d0 = 0; d0 < count; d0 += D) {
    Vec q_row[D], dq_acc[D];
    for (int e = 0; e < D; ++e) {
      q_row[e] = Vec::load(q + (d0 + e) * W);
      dq_acc[e] = Vec::load(dq + (d0 + e) * W);
    }
    for (int r = 0; r < ROWS; ++r)
      for (int e = 0; e < D; ++e) {
        const Vec s = PAIRS ? Vec::broadcast_pair(ds_t + r * BQ + 2 * (d0 + e))
                            : Vec::broadcast(ds_t[r * BQ + d0 + e]);
        dk_acc[r] = Vec::fmadd(s, q_row[e], dk_acc[r]);
        dq_acc[e] = Vec::fmadd(s, kc_row[r], dq_acc[e]);
      }
    for (int e = 0; e < D; ++e) dq_acc[e].store(dq + (d0 + e) * W);
  }
  for (int r = 0; r < ROWS; ++r) dk_acc[r].store(dk + r * ldk);
}

// The last rows % kKeyBlock keys: picks the block height at run time.
template <class Vec, bool PAIRS, int64_t BQ, int ROWS = kKeyBlock<Vec, PAIRS> - 1>
inline void dk_dq_tail(int64_t rows, int64_t count, const typename Vec::T* ds_t,
                       const typename Vec::T* q, const typename Vec::T* kc, typename Vec::T* dk,
                       int64_t ldk, typename Vec::T* dq) {
  if constexpr (ROWS > 0) {
    if (rows == ROWS)
      dk_dq_body<Vec, PAIRS, ROWS, BQ>(count, ds_t, q, kc, dk, ldk, dq);
    else
      dk_dq_tail<Vec, PAIRS, BQ, ROWS - 1>(rows, count, ds_t, q, kc, dk, ldk, dq);
  }
}

// count: query pairs (PAIRS) or queries.
template <class Vec, bool PAIRS, int64_t BQ>
inline void dk_dq(int64_t rows, int64_t count, const typename Vec::T* ds_t,
                  const typename Vec::T* q, const typename Vec::T* kc, typename Vec::T* dk,
                  int64_t ldk, typename Vec::T* dq) {
  constexpr int R = kKeyBlock<Vec, PAIRS>, W = Vec::width;
  int64_t r = 0;
  for (; r + R <= rows; r += R)
    dk_dq_body<Vec, PAIRS, R, BQ>(count, ds_t + r * BQ, q, kc + r * W, dk + r * ldk, ldk, dq);
  if (r < rows)
    dk_dq_tail<Vec, PAIRS, BQ>(rows - r, count, ds_t + r * BQ, q, kc + r * W, dk + r * ldk, ldk, dq);
}

template <class Vec, int64_t BQ>
int64_t backward_scratch(int64_t /*qk_pad*/, int64_t /*v_pad*/) {
  return 2 * kStrip<Vec> * BQ;
}

// Keys [j0, j0 + count) against every query, BQ queries at a time (the last
// chunk of n_pad may be narrower); scores transposed (keys are rows), a strip
// of keys at a time, so that its P^T and dS^T and the chunk's dO stay in L1
// through the five products that use them.
template <class Vec, int64_t BQ>
void backward_block(const BackwardProblem<typename Vec::T>& p, int64_t j0, int64_t count,
                    typename Vec::T* scratch) {
  using T = typename Vec::T;
  constexpr int W = Vec::width;
  constexpr int64_t SR = kStrip<Vec>;
  const bool pairs = backward_pairs(p.qk, W);
  // Rows BQ apart even when a chunk is narrower (BM < BQ): the products that
  // read them as A then know their row stride at compile time (gemm_tile_body).
  T* pt = scratch;        // (SR, BQ): probabilities P^T, the first BM columns
  T* dst = pt + SR * BQ;  // (SR, BQ): dP^T, then dS^T
  const int64_t valid = p.m - j0 < count ? p.m - j0 : count;
  for (int64_t i = 0; i < count * p.qk_pad; ++i) p.dk[j0 * p.qk_pad + i] = T(0);
  for (int64_t i = 0; i < count * p.v_pad; ++i) p.dv[j0 * p.v_pad + i] = T(0);
  // Chunks wholly of padded queries (probability 0) add nothing.
  for (int64_t i0 = 0; i0 < p.n; i0 += BQ) {
    const int64_t BM = p.n_pad - i0 < BQ ? p.n_pad - i0 : BQ;
    // Strips wholly of padded keys take no probability and add nothing.
    for (int64_t r0 = 0; r0 < valid; r0 += SR) {
      const int64_t rows = count - r0 < SR ? count - r0 : SR;
      const int64_t j = j0 + r0;
      // P^T = exp2(S^T - lse), straight from the score registers (padded keys: 0)
      const int64_t valid_rows = valid - r0;
      const T* lse = p.lse2 + i0;
      gemm<Vec, 1>(rows, BM, p.qk, p.k + j * p.qk, 1, SR, p.qt + i0 * p.qk, p.qk * W, pt, BQ,
                   false, [valid_rows, lse](Vec s, int64_t row, int64_t col) {
                     return row < valid_rows ? Vec::exp2(s - Vec::load(lse + col)) : Vec::zero();
                   });
      // dV += P^T dO
      gemm<Vec, BQ>(rows, p.v_pad, BM, pt, BQ, 1, p.dout + i0 * W, p.n_pad * W,
                    p.dv + j * p.v_pad, p.v_pad, true);
      // dS^T = P^T * (dP^T - delta), dP^T = V dO^T straight from the product's registers
      const T* delta = p.delta + i0;
      gemm<Vec, 1>(rows, BM, p.v_channels, p.v + j * p.v_channels, 1, SR,
                   p.doutt + i0 * p.v_channels, p.v_channels * W, dst, BQ, false,
                   [pt, delta](Vec dp, int64_t row, int64_t col) {
                     return Vec::load(pt + row * BQ + col) * (dp - Vec::load(delta + col));
                   });
      if (pairs) {
        // dK += dS^T Q and dQ += dS Kc over query pairs: lanes 2c and 2c + 1 of a key's dK row
        // sum its even and its odd queries; Q in the pair layout, Kc doubled
        dk_dq<Vec, true, BQ>(rows, BM / 2, dst, p.q + i0 / 2 * W, p.kc + j * W,
                             p.dk + j * p.qk_pad, p.qk_pad, p.dq + i0 / 2 * W);
      } else if (p.qk_pad == W) {
        // the same over single queries, a row of Q, Kc, dK and dQ one vector
        dk_dq<Vec, false, BQ>(rows, BM, dst, p.q + i0 * W, p.kc + j * W, p.dk + j * p.qk_pad,
                              p.qk_pad, p.dq + i0 * W);
      } else {
        // dK += dS^T Q; dQ += dS K (dS^T read transposed through the A strides)
        gemm<Vec, BQ>(rows, p.qk_pad, BM, dst, BQ, 1, p.q + i0 * W, p.n_pad * W,
                      p.dk + j * p.qk_pad, p.qk_pad, true);
        gemm<Vec, 1>(BM, p.qk_pad, rows, dst, 1, BQ, p.kc + j * W, p.m_pad * W,
                     p.dq + i0 * p.qk_pad, p.qk_pad, true);
      }
    }
  }
}

template <class Vec>
void exp2_inplace(typename Vec::T* x, int64_t n) {
  int64_t i = 0;
  for (; i + Vec::width <= n; i += Vec::width) Vec::exp2(Vec::load(x + i)).store(x + i);
  for (; i < n; ++i) x[i] = Vec::exp2_scalar(x[i]);
}

template <class Vec>
void row_dots(const typename Vec::T* a, const typename Vec::T* b, int64_t depth, int64_t cols,
              typename Vec::T* out) {
  constexpr int W = Vec::width;
  for (int64_t i = 0; i < cols; i += W) {
    const typename Vec::T* a_panel = a + i * depth;
    const typename Vec::T* b_panel = b + i * depth;
    Vec acc = Vec::zero();  // as gemm_tile's accumulators: zero, then fmadd over d
    for (int64_t d = 0; d < depth; ++d)
      acc = Vec::fmadd(Vec::load(a_panel + d * W), Vec::load(b_panel + d * W), acc);
    acc.store(out + i);
  }
}

// BM queries by BN keys per forward (backward) block; the backward takes its
// queries BQ at a time.
template <class Vec, int64_t BM, int64_t BN, int64_t BQ>
constexpr KernelTable<typename Vec::T> make_table(const char* isa) {
  static_assert(BM % Vec::width == 0 && BN % Vec::width == 0 && BQ % Vec::width == 0,
                "blocks must hold whole vectors");
  static_assert(BN % kStrip<Vec> == 0, "key blocks must hold whole strips");
  return KernelTable<typename Vec::T>{
      isa,
      BM,
      BN,
      Vec::width,
      kStrip<Vec>,
      &forward_scratch<Vec, BN>,
      &backward_scratch<Vec, BQ>,
      &forward_block<Vec, BN>,
      &backward_block<Vec, BQ>,
      &exp2_inplace<Vec>,
      &row_dots<Vec>,
  };
}

}  // namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE
