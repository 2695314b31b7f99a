// 16 x float in an AVX-512 register (AVX-512F and DQ). Include only in a
// translation unit compiled for avx512f and avx512dq (tiles_avx512*.cpp, tiles_amx.cpp).
#pragma once

#include <immintrin.h>

#include <cstring>

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
  // p[0], p[1], p[0], p[1], ...: one 64-bit broadcast (vbroadcastsd, a plain load).
  static VecAvx512 broadcast_pair(const float* p) {
    double pair;
    std::memcpy(&pair, p, sizeof pair);
    return {_mm512_castpd_ps(_mm512_set1_pd(pair))};
  }
  static VecAvx512 fmadd(VecAvx512 a, VecAvx512 b, VecAvx512 c) {
    return {_mm512_fmadd_ps(a.v, b.v, c.v)};
  }
  static VecAvx512 max(VecAvx512 a, VecAvx512 b) { return {_mm512_max_ps(a.v, b.v)}; }

  // 2^x with VecAvx2::exp2's polynomial (exp2_poly.h) for 2^f, f = x - floor(x)
  // (vreduceps, one instruction), and vscalefps for the 2^floor(x): it floors
  // x itself, so n = x - f is never formed (8 instructions; AVX2's take 13).
  // The softmax's arguments are scores minus a running max or a log-sum-exp:
  // at most a rounding above 0, or -inf, or NaN (a +inf score makes the max
  // +inf and the argument NaN), so no overflow clamp. Below -126 (-inf
  // included) the result is exactly 0 (the mask; AVX2 clamps to -127 for the
  // same end); NaN stays NaN (the compare is unordered-true).
  static VecAvx512 exp2(VecAvx512 x) {
    const __mmask16 normal = _mm512_cmp_ps_mask(x.v, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
    const __m512 f = _mm512_reduce_ps(x.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(kExp2Poly[0]);
    for (unsigned i = 1; i < sizeof kExp2Poly / sizeof kExp2Poly[0]; ++i)
      p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[i]));
    return {_mm512_maskz_scalef_ps(normal, p, x.v)};
  }

  float reduce_sum() const { return _mm512_reduce_add_ps(v); }
  float reduce_max() const { return _mm512_reduce_max_ps(v); }
  // Whether some lane is above x or NaN (not <= x).
  bool any_above(float x) const { return _mm512_cmp_ps_mask(v, _mm512_set1_ps(x), _CMP_NLE_UQ) != 0; }
  static float exp2_scalar(float a) { return __builtin_exp2f(a); }
  static float log2_scalar(float a) { return __builtin_log2f(a); }
};

// Free functions, as in vec_avx2.h (GCC's target pragma skips in-class friends).
inline VecAvx512 operator+(VecAvx512 a, VecAvx512 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VecAvx512 operator-(VecAvx512 a, VecAvx512 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VecAvx512 operator*(VecAvx512 a, VecAvx512 b) { return {_mm512_mul_ps(a.v, b.v)}; }

}  // namespace sacolor::cpu
