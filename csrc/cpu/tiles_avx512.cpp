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
// 128 queries at a time: with its keys and values in strips, 1.5-2 % faster
// than 64 (kernel micro-benchmark, both interleaved, 1 thread, 128x128 and
// 256x256, C = 64; 96: -0.8 %, 48: +1.4 %, 256: as 128), though a chunk's dO
// and dO^T no longer fit in L1 (64 had been the best of 48, 64 and 112 before).
constexpr KernelTable<float> kAvx512F32 = avx512::make_table<VecAvx512, 112, 112, 128>("avx512");
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
