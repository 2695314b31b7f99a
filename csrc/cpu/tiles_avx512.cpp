// The float32 tile kernels for AVX-512F (+DQ): the same flash tiles as the AVX2 unit
// (tiles_impl.h) on 16-lane vectors and 32 registers. Only this file is
// compiled for AVX-512F (+DQ) (the pragma below), it includes no torch header, and
// the dispatcher calls avx512_f32() only after isa.cpp found AVX-512F (+DQ) and the
// OS's zmm state.

#include "tiles.h"

#if defined(__x86_64__) && defined(__GNUC__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx2,fma")
#endif

#include "vec_avx512.h"

#define SACOLOR_TILES_NAMESPACE avx512
#include "tiles_impl.h"

namespace sacolor::cpu {
namespace {
// 112 = 8 register tiles of 14 rows (two vectors per row: 28 accumulators of
// 32 registers) = 7 tiles of 16 rows (one vector per row) = 7 vectors of 16
// columns: no ragged tiles whichever way a block is used. The backward takes
// 64 queries at a time (measured: 0.72 s at 112, 0.68 s at 64, 0.71 s at 48,
// 1 thread, 128x128, C = 64), so that dO and dO^T of a chunk stay in L1 beside
// the key strip's P^T and dS^T.
constexpr KernelTable<float> kAvx512F32 = avx512::make_table<VecAvx512, 112, 112, 64>("avx512");
}  // namespace
const KernelTable<float>* avx512_f32() { return &kAvx512F32; }
}  // namespace sacolor::cpu

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else

namespace sacolor::cpu {
const KernelTable<float>* avx512_f32() { return nullptr; }
}  // namespace sacolor::cpu

#endif
