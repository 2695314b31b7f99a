// The bfloat16 tile kernels: every product a vdpbf16ps dot product (two
// bfloat16 multiply-adds per float32 lane, accumulated in float32), the
// online softmax in float32, probabilities rounded to bfloat16 once per tile
// (as flash kernels do), and the backward alike: dS rounded once per tile for
// dK and dQ. Only this file is compiled for AVX512-BF16 (the pragma below); it
// includes no torch header, and the dispatcher calls avx512bf16_kernels() only
// after isa.cpp found AVX-512F, AVX-512BW, AVX512-BF16 and the OS's zmm state.

#include "tiles.h"

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 10)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512bf16,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512bf16,avx2,fma")
#endif

#include <cstring>

#include "vec_avx512.h"

// The float32 helpers (row max, exp2 rows) of the shared tiles, for this unit's ISA.
#define SACOLOR_TILES_NAMESPACE avx512bf16
#include "tiles_impl.h"

namespace sacolor::cpu::avx512bf16 {
namespace {

constexpr int W = 16;  // float32 lanes; a pair panel row is 2 * W bfloat16

// C[rows x (CV * 16)] (+)= A B over an even `depth`: A[r, d] = a[r * a_rs + d]
// (bfloat16, depth contiguous), B in pair panels b_ps apart.
template <int ROWS, int CV>
inline void dot_tile(int64_t depth, const bf16_bits* a, int64_t a_rs, const bf16_bits* b,
                     int64_t b_ps, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[ROWS][CV];
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < CV; ++j)
      acc[r][j] = accumulate ? _mm512_loadu_ps(c + r * ldc + j * W) : _mm512_setzero_ps();
  for (int64_t d = 0; d < depth; d += 2) {
    __m512bh brow[CV];
    for (int j = 0; j < CV; ++j) brow[j] = (__m512bh)_mm512_loadu_si512(b + j * b_ps + d * W);
    for (int r = 0; r < ROWS; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * a_rs + d, sizeof pair);
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(pair);
      for (int j = 0; j < CV; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], brow[j], ar);
    }
  }
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < CV; ++j) _mm512_storeu_ps(c + r * ldc + j * W, acc[r][j]);
}

template <int CV>
constexpr int tile_rows() {
  return (32 - CV - 1) / CV < 16 ? (32 - CV - 1) / CV : 16;
}

template <int CV, int ROWS = tile_rows<CV>()>
inline void dot_tail(int64_t rows, int64_t depth, const bf16_bits* a, int64_t a_rs,
                     const bf16_bits* b, int64_t b_ps, float* c, int64_t ldc, bool accumulate) {
  if constexpr (ROWS > 0) {
    if (rows == ROWS)
      dot_tile<ROWS, CV>(depth, a, a_rs, b, b_ps, c, ldc, accumulate);
    else
      dot_tail<CV, ROWS - 1>(rows, depth, a, a_rs, b, b_ps, c, ldc, accumulate);
  }
}

template <int CV>
inline void dot_column_group(int64_t rows, int64_t depth, const bf16_bits* a, int64_t a_rs,
                             const bf16_bits* b, int64_t b_ps, float* c, int64_t ldc,
                             bool accumulate) {
  constexpr int R = tile_rows<CV>();
  int64_t r = 0;
  for (; r + R <= rows; r += R)
    dot_tile<R, CV>(depth, a + r * a_rs, a_rs, b, b_ps, c + r * ldc, ldc, accumulate);
  if (r < rows)
    dot_tail<CV>(rows - r, depth, a + r * a_rs, a_rs, b, b_ps, c + r * ldc, ldc, accumulate);
}

// C (+)= A B; cols a multiple of 16, B's panels b_ps apart (column groups
// outermost, as in tiles_impl.h's gemm).
void dot(int64_t rows, int64_t cols, int64_t depth, const bf16_bits* a, int64_t a_rs,
         const bf16_bits* b, int64_t b_ps, float* c, int64_t ldc, bool accumulate) {
  int64_t col = 0;
  for (; col + 2 * W <= cols; col += 2 * W)
    dot_column_group<2>(rows, depth, a, a_rs, b + col / W * b_ps, b_ps, c + col, ldc, accumulate);
  if (col < cols)
    dot_column_group<1>(rows, depth, a, a_rs, b + col / W * b_ps, b_ps, c + col, ldc, accumulate);
}

// 16 float32 to bfloat16, round to nearest even (vcvtneps2bf16).
inline void store_bf16(bf16_bits* p, __m512 x) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(x));
}

// rows x len float32 (row-major, ld) to bfloat16 (row-major, len apart); len % 16 == 0.
void round_rows(const float* src, int64_t rows, int64_t len, bf16_bits* dst) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < len; j += W) store_bf16(dst + i * len + j, _mm512_loadu_ps(src + i * len + j));
}

// src (rows x cols) float32, row-major, as the right-hand operand (depth =
// rows, even) in pair panels: (cols / 16, rows / 2, 16, 2).
void pack_pairs(const float* src, int64_t rows, int64_t cols, bf16_bits* dst) {
  // vcvtne2ps2bf16 puts row d + 1 above row d; this interleaves them lane by lane.
  alignas(64) static constexpr uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                          21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                          11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i interleave = _mm512_load_si512(kInterleave);
  for (int64_t d = 0; d < rows; d += 2)
    for (int64_t j = 0; j < cols; j += W) {
      const __m512bh both = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + (d + 1) * cols + j),
                                                _mm512_loadu_ps(src + d * cols + j));
      _mm512_storeu_si512(dst + j / W * rows * W + d * W,
                          _mm512_permutexvar_epi16(interleave, (__m512i)both));
    }
}

template <int64_t BM, int64_t BN>
int64_t forward_scratch_bf16(int64_t v_pad) {
  // scores, unnormalised o, running max and sum, probabilities in bfloat16
  return BM * BN + BM * v_pad + 2 * BM + BM * BN / 2;
}

template <int64_t BM, int64_t BN>
void forward_block_bf16(const Bf16ForwardProblem& p, int64_t block, float* scratch) {
  using Vec = VecAvx512;
  const float neg_inf = -__builtin_inff();
  float* s = scratch;                  // (BM, BN) scores, then probabilities
  float* acc = s + BM * BN;            // (BM, v_pad) unnormalised o
  float* run_max = acc + BM * p.v_pad;  // (BM,)
  float* run_sum = run_max + BM;       // (BM,)
  bf16_bits* prob = reinterpret_cast<bf16_bits*>(run_sum + BM);  // (BM, BN)
  const int64_t i0 = block * BM;
  const bf16_bits* q = p.q + i0 * p.qk2;
  for (int64_t i = 0; i < BM * p.v_pad; ++i) acc[i] = 0.0f;
  for (int64_t i = 0; i < BM; ++i) {
    run_max[i] = neg_inf;
    run_sum[i] = 0.0f;
  }
  for (int64_t j0 = 0; j0 < p.m_pad; j0 += BN) {
    dot(BM, BN, p.qk2, q, p.qk2, p.kt + j0 * p.qk2, p.qk2 * W, s, BN, false);
    const int64_t valid = p.m - j0 < BN ? p.m - j0 : BN;
    for (int64_t i = 0; i < BM; ++i) {
      float* row = s + i * BN;
      for (int64_t j = valid; j < BN; ++j) row[j] = neg_inf;
      const float block_max = row_max<Vec>(row, BN);
      const float old_max = run_max[i];
      const float new_max = block_max > old_max ? block_max : old_max;
      const float shift = finite_or_zero_max(new_max);
      const float sum = exp2_row<Vec>(row, BN, shift);
      if (new_max != old_max) {
        const Vec alpha = Vec::broadcast(Vec::exp2_scalar(old_max - shift));
        run_sum[i] *= alpha.v[0];
        float* acc_row = acc + i * p.v_pad;
        for (int64_t c = 0; c < p.v_pad; c += W) (Vec::load(acc_row + c) * alpha).store(acc_row + c);
      }
      run_sum[i] += sum;
      run_max[i] = new_max;
    }
    round_rows(s, BM, BN, prob);
    dot(BM, p.v_pad, BN, prob, BN, p.v + j0 * W, p.m_pad * W, acc, p.v_pad, true);
  }
  const int64_t rows = p.n - i0 < BM ? p.n - i0 : BM;
  for (int64_t i = 0; i < rows; ++i) {
    const Vec inv_l = Vec::broadcast(1.0f / run_sum[i]);
    const float* acc_row = acc + i * p.v_pad;
    float* o_row = p.o + (i0 + i) * p.v_channels;
    int64_t c = 0;
    for (; c + W <= p.v_channels; c += W) (Vec::load(acc_row + c) * inv_l).store(o_row + c);
    if (c < p.v_channels) (Vec::load(acc_row + c) * inv_l).store_first(o_row + c, p.v_channels - c);
    p.lse[i0 + i] = finite_or_zero_max(run_max[i]) + Vec::log2_scalar(run_sum[i]);
  }
}

template <int64_t BM, int64_t BN>
int64_t backward_scratch_bf16() {
  // P^T and dP^T / dS^T in float32; P^T, dS^T and dS^T's pair panels in bfloat16
  return 2 * BN * BM + 3 * BN * BM / 2;
}

// One key block against every query block; scores transposed (keys are rows).
template <int64_t BM, int64_t BN>
void backward_block_bf16(const Bf16BackwardProblem& p, int64_t block, float* scratch) {
  using Vec = VecAvx512;
  float* pt = scratch;        // (BN, BM) P^T
  float* dst = pt + BN * BM;  // (BN, BM) dP^T, then dS^T
  bf16_bits* pt16 = reinterpret_cast<bf16_bits*>(dst + BN * BM);  // (BN, BM)
  bf16_bits* dst16 = pt16 + BN * BM;                               // (BN, BM)
  bf16_bits* ds_pairs = dst16 + BN * BM;  // dS^T as B: (BM / 16, BN / 2, 16, 2)
  const int64_t j0 = block * BN;
  const int64_t valid = p.m - j0 < BN ? p.m - j0 : BN;
  float* dk = p.dk + j0 * p.qk_pad;
  float* dv = p.dv + j0 * p.v_pad;
  for (int64_t i = 0; i < BN * p.qk_pad; ++i) dk[i] = 0.0f;
  for (int64_t i = 0; i < BN * p.v_pad; ++i) dv[i] = 0.0f;
  for (int64_t i0 = 0; i0 < p.n_pad; i0 += BM) {
    dot(BN, BM, p.qk2, p.k + j0 * p.qk2, p.qk2, p.qt + i0 * p.qk2, p.qk2 * W, pt, BM, false);
    for (int64_t j = 0; j < BN; ++j) {
      float* row = pt + j * BM;
      if (j >= valid) {  // padded keys take no probability
        for (int64_t i = 0; i < BM; ++i) row[i] = 0.0f;
        continue;
      }
      for (int64_t i = 0; i < BM; i += W)
        Vec::exp2(Vec::load(row + i) - Vec::load(p.lse2 + i0 + i)).store(row + i);
    }
    round_rows(pt, BN, BM, pt16);
    // dV += P^T dO
    dot(BN, p.v_pad, BM, pt16, BM, p.dout + i0 * W, p.n_pad * W, dv, p.v_pad, true);
    // dP^T = V dO^T, then dS^T = P^T * (dP^T - delta)
    dot(BN, BM, p.v2, p.v + j0 * p.v2, p.v2, p.doutt + i0 * p.v2, p.v2 * W, dst, BM, false);
    for (int64_t j = 0; j < BN; ++j) {
      float* ds_row = dst + j * BM;
      const float* p_row = pt + j * BM;
      for (int64_t i = 0; i < BM; i += W)
        (Vec::load(p_row + i) * (Vec::load(ds_row + i) - Vec::load(p.delta + i0 + i)))
            .store(ds_row + i);
    }
    round_rows(dst, BN, BM, dst16);
    pack_pairs(dst, BN, BM, ds_pairs);
    // dK += dS^T Q; dQ^T += Kc^T dS^T
    dot(BN, p.qk_pad, BM, dst16, BM, p.q + i0 * W, p.n_pad * W, dk, p.qk_pad, true);
    dot(p.qk, BM, BN, p.kct + j0, p.m_pad, ds_pairs, BN * W, p.dqt + i0, p.n_pad, true);
  }
}

}  // namespace
}  // namespace sacolor::cpu::avx512bf16

namespace sacolor::cpu {
namespace {
// 112 = 8 register tiles of 14 rows (two vectors per row) = 7 of 16 rows (one
// vector per row) = 7 vectors of 16 columns, as for the float32 AVX-512 tiles.
constexpr int64_t kBlock = 112;
constexpr Bf16KernelTable kAvx512Bf16{
    "avx512bf16", kBlock, kBlock, 16,
    &avx512bf16::forward_scratch_bf16<kBlock, kBlock>, &avx512bf16::backward_scratch_bf16<kBlock, kBlock>,
    &avx512bf16::forward_block_bf16<kBlock, kBlock>, &avx512bf16::backward_block_bf16<kBlock, kBlock>};
}  // namespace
const Bf16KernelTable* avx512bf16_kernels() { return &kAvx512Bf16; }
}  // namespace sacolor::cpu

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else

namespace sacolor::cpu {
const Bf16KernelTable* avx512bf16_kernels() { return nullptr; }
}  // namespace sacolor::cpu

#endif
