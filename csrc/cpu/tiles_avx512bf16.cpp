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
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512bf16,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512bf16,avx2,fma")
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

// The dot products of the bfloat16 tiles (tiles_bf16_impl.h) on vdpbf16ps.
struct VnniDot {
  static constexpr int64_t depth_multiple = 2;  // one bfloat16 pair per lane and instruction
  static constexpr int64_t row_multiple = 1;
  struct Scope {};  // no per-thread state

  // C (+)= A B; cols a multiple of 16, B's panels b_ps apart (column groups
  // outermost, as in tiles_impl.h's gemm).
  static void dot(int64_t rows, int64_t cols, int64_t depth, const bf16_bits* a, int64_t a_rs,
                  const bf16_bits* b, int64_t b_ps, float* c, int64_t ldc, bool accumulate);
};

void VnniDot::dot(int64_t rows, int64_t cols, int64_t depth, const bf16_bits* a, int64_t a_rs,
                  const bf16_bits* b, int64_t b_ps, float* c, int64_t ldc, bool accumulate) {
  int64_t col = 0;
  for (; col + 2 * W <= cols; col += 2 * W)
    dot_column_group<2>(rows, depth, a, a_rs, b + col / W * b_ps, b_ps, c + col, ldc, accumulate);
  if (col < cols)
    dot_column_group<1>(rows, depth, a, a_rs, b + col / W * b_ps, b_ps, c + col, ldc, accumulate);
}

}  // namespace
}  // namespace sacolor::cpu::avx512bf16

#include "tiles_bf16_impl.h"

namespace sacolor::cpu {
namespace {
// 112 = 8 register tiles of 14 rows (two vectors per row) = 7 of 16 rows (one
// vector per row) = 7 vectors of 16 columns, as for the float32 AVX-512 tiles.
constexpr Bf16KernelTable kAvx512Bf16 =
    avx512bf16::make_bf16_table<avx512bf16::VnniDot, 112, 112>("avx512bf16");
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
