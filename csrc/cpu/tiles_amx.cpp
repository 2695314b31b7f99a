// The bfloat16 tile kernels on AMX: every product on the tile unit
// (tdpbf16ps: a 16 x 32 bfloat16 tile times a 32 x 16 one into 16 x 16
// float32 sums), the softmax, rounding and packing on AVX-512 as in the
// vdpbf16ps unit (tiles_bf16_impl.h). Only this file is compiled for AMX (the
// pragma below); it includes no torch header, and the dispatcher calls
// amx_kernels() only after isa.cpp found AMX-TILE, AMX-BF16, AVX512-BF16, the
// OS's tile state and this process's permission to use it (arch_prctl).

#include "tiles.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11

#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512dq,avx512bw,avx512bf16,avx2,fma")

#include <cstring>

#include "vec_avx512.h"

#define SACOLOR_TILES_NAMESPACE amx
#include "tiles_impl.h"

namespace sacolor::cpu::amx {
namespace {

// Palette 1, all eight tiles 16 rows of 64 bytes: tiles 0-3 hold a 2 x 2 block
// of C (16 x 16 float32 each), 4-5 two A tiles (16 x 32 bfloat16), 6-7 two B
// tiles (16 pair rows x 16 columns x 2).
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// C[(TR * 16) x (TC * 16)] (+)= A B over `depth` (a multiple of 32).
template <int TR, int TC>
inline void tile_block(int64_t depth, const bf16_bits* a, int64_t a_rs, const bf16_bits* b,
                       int64_t b_ps, float* c, int64_t ldc, bool accumulate) {
  const int64_t c_stride = ldc * 4, a_stride = a_rs * 2;
  if (accumulate) {
    _tile_loadd(0, c, c_stride);
    if constexpr (TC > 1) _tile_loadd(1, c + 16, c_stride);
    if constexpr (TR > 1) _tile_loadd(2, c + 16 * ldc, c_stride);
    if constexpr (TR > 1 && TC > 1) _tile_loadd(3, c + 16 * ldc + 16, c_stride);
  } else {
    _tile_zero(0);
    if constexpr (TC > 1) _tile_zero(1);
    if constexpr (TR > 1) _tile_zero(2);
    if constexpr (TR > 1 && TC > 1) _tile_zero(3);
  }
  for (int64_t d = 0; d < depth; d += 32) {
    _tile_loadd(4, a + d, a_stride);
    if constexpr (TR > 1) _tile_loadd(5, a + 16 * a_rs + d, a_stride);
    _tile_loadd(6, b + d * 16, 64);
    if constexpr (TC > 1) _tile_loadd(7, b + b_ps + d * 16, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (TC > 1) _tile_dpbf16ps(1, 4, 7);
    if constexpr (TR > 1) _tile_dpbf16ps(2, 5, 6);
    if constexpr (TR > 1 && TC > 1) _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, c_stride);
  if constexpr (TC > 1) _tile_stored(1, c + 16, c_stride);
  if constexpr (TR > 1) _tile_stored(2, c + 16 * ldc, c_stride);
  if constexpr (TR > 1 && TC > 1) _tile_stored(3, c + 16 * ldc + 16, c_stride);
}

// The dot products of the bfloat16 tiles (tiles_bf16_impl.h) on AMX.
struct TileDot {
  static constexpr int64_t depth_multiple = 32;  // one A tile's width
  static constexpr int64_t row_multiple = 16;    // one tile's height

  // The tile configuration is per thread, and other code on the thread (oneDNN's
  // AMX GEMMs) may load its own between two of our blocks: load ours for each
  // block, release the tile state after it.
  struct Scope {
    Scope() {
      static const TileConfig config;
      _tile_loadconfig(&config);
    }
    ~Scope() { _tile_release(); }
  };

  // C (+)= A B; rows and cols multiples of 16, depth of 32, B's panels b_ps apart.
  static void dot(int64_t rows, int64_t cols, int64_t depth, const bf16_bits* a, int64_t a_rs,
                  const bf16_bits* b, int64_t b_ps, float* c, int64_t ldc, bool accumulate) {
    for (int64_t r = 0; r < rows; r += 32) {
      const bool two_rows = r + 32 <= rows;
      for (int64_t col = 0; col < cols; col += 32) {
        const bool two_cols = col + 32 <= cols;
        const bf16_bits* a_r = a + r * a_rs;
        const bf16_bits* b_c = b + col / 16 * b_ps;
        float* c_rc = c + r * ldc + col;
        if (two_rows && two_cols)
          tile_block<2, 2>(depth, a_r, a_rs, b_c, b_ps, c_rc, ldc, accumulate);
        else if (two_rows)
          tile_block<2, 1>(depth, a_r, a_rs, b_c, b_ps, c_rc, ldc, accumulate);
        else if (two_cols)
          tile_block<1, 2>(depth, a_r, a_rs, b_c, b_ps, c_rc, ldc, accumulate);
        else
          tile_block<1, 1>(depth, a_r, a_rs, b_c, b_ps, c_rc, ldc, accumulate);
      }
    }
  }
};

}  // namespace
}  // namespace sacolor::cpu::amx

#include "tiles_bf16_impl.h"

namespace sacolor::cpu {
namespace {
// Queries in blocks of 128 (4 depth steps of 32, 4 row pairs of tiles), keys
// in blocks of 256: the P V product then runs 8 depth steps per load and
// store of its C tiles, and each row's max is reduced half as often
// (1 thread, 128x128, C = 64: forward 0.138 -> 0.125 s, forward + backward
// 0.387 -> 0.370 s; 512 keys, or 256 queries, were slower forward + backward).
constexpr Bf16KernelTable kAmx = amx::make_bf16_table<amx::TileDot, 128, 256>("amx");
}  // namespace
const Bf16KernelTable* amx_kernels() { return &kAmx; }
}  // namespace sacolor::cpu

#else

namespace sacolor::cpu {
const Bf16KernelTable* amx_kernels() { return nullptr; }
}  // namespace sacolor::cpu

#endif
