// The tile kernels for AVX2 + FMA. Only this file is compiled for those
// instructions (the pragma below), and it includes no torch header, so nothing
// AVX2-only can leak into code an older CPU runs; the dispatcher calls
// avx2_f32() only after __builtin_cpu_supports says the CPU has both.

#include "tiles.h"

#if defined(__x86_64__) && defined(__GNUC__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif

#include "vec_avx2.h"

#define SACOLOR_TILES_NAMESPACE avx2
#include "tiles_impl.h"

namespace sacolor::cpu {
namespace {
// 96 = 16 register tiles of 6 rows = 12 vectors of 8 columns: no ragged tiles
// whichever way a block is used (queries are rows in the forward, columns in
// the backward; keys the other way round). The backward takes 384 queries at a
// time: each strip's dV and dK accumulators then make one trip to memory per
// 384 queries (kernel micro-benchmark, both interleaved call by call, 1 thread,
// C = 64, under load: against 96, 128x128 -3.0 to -3.9 %, 64x64 -3.8 to
// -4.3 %, 256x256 -3.5 %; 128: -1.2 to -2.6 %, 192: -2.6 to -3.3 %, 256:
// -2.4 %, 768: -2.4 to -3.2 %). Before dK and dQ became one product, 48 to 192
// were within 0.5 % of 96.
constexpr KernelTable<float> kAvx2F32 = avx2::make_table<VecAvx2, 96, 96, 384>("avx2");
}  // namespace
const KernelTable<float>* avx2_f32() { return &kAvx2F32; }
}  // namespace sacolor::cpu

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else

namespace sacolor::cpu {
const KernelTable<float>* avx2_f32() { return nullptr; }
}  // namespace sacolor::cpu

#endif
