// 16 x float in an AVX-512 register (AVX-512F only). Include only in a
// translation unit compiled for avx512f (tiles_avx512*.cpp).
#pragma once

#include <immintrin.h>

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() as the unused merge
// source and then warn that it "may be used uninitialized"; nothing is.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "exp2_poly.h"

namespace sacolor::cpu {

struct VecAvx512 {
  using T = float;
  static constexpr int width = 16;
  static constexpr int registers = 32;
  __m512 v;

  static VecAvx512 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  // The first n (< width) lanes only: a masked store, no scalar remainder loop.
  void store_first(float* p, int n) const {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
  }
  static VecAvx512 broadcast(float a) { return {_mm512_set1_ps(a)}; }
  static VecAvx512 zero() { return {_mm512_setzero_ps()}; }
  static VecAvx512 fmadd(VecAvx512 a, VecAvx512 b, VecAvx512 c) {
    return {_mm512_fmadd_ps(a.v, b.v, c.v)};
  }
  static VecAvx512 max(VecAvx512 a, VecAvx512 b) { return {_mm512_max_ps(a.v, b.v)}; }

  // 2^x exactly as VecAvx2::exp2 computes it (same polynomial, same clamps),
  // so every float32 path rounds alike.
  static VecAvx512 exp2(VecAvx512 x) {
    __m512 t = _mm512_max_ps(_mm512_set1_ps(-127.0f), x.v);
    t = _mm512_min_ps(_mm512_set1_ps(128.0f), t);
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(kExp2Poly[0]);
    for (unsigned i = 1; i < sizeof kExp2Poly / sizeof kExp2Poly[0]; ++i)
      p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[i]));
    const __m512i biased = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return {_mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(biased, 23)))};
  }

  float reduce_sum() const { return _mm512_reduce_add_ps(v); }
  float reduce_max() const { return _mm512_reduce_max_ps(v); }
  static float exp2_scalar(float a) { return __builtin_exp2f(a); }
  static float log2_scalar(float a) { return __builtin_log2f(a); }
};

// Free functions, as in vec_avx2.h (GCC's target pragma skips in-class friends).
inline VecAvx512 operator+(VecAvx512 a, VecAvx512 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VecAvx512 operator-(VecAvx512 a, VecAvx512 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VecAvx512 operator*(VecAvx512 a, VecAvx512 b) { return {_mm512_mul_ps(a.v, b.v)}; }

}  // namespace sacolor::cpu
