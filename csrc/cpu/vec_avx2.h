// 8 x float in an AVX2 register, with FMA. Include only in a translation unit
// compiled for avx2,fma (tiles_avx2.cpp).
#pragma once

#include <immintrin.h>

#include <cstring>

#include "exp2_poly.h"

namespace sacolor::cpu {

struct VecAvx2 {
  using T = float;
  static constexpr int width = 8;
  static constexpr int registers = 16;
  __m256 v;

  static VecAvx2 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  // The first n (< width) lanes only: a masked store, no scalar remainder loop.
  void store_first(float* p, int n) const {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes), v);
  }
  static VecAvx2 broadcast(float a) { return {_mm256_set1_ps(a)}; }
  static VecAvx2 zero() { return {_mm256_setzero_ps()}; }
  // p[0], p[1], p[0], p[1], ...: one 64-bit broadcast (vbroadcastsd, a plain load).
  static VecAvx2 broadcast_pair(const float* p) {
    double pair;
    std::memcpy(&pair, p, sizeof pair);
    return {_mm256_castpd_ps(_mm256_set1_pd(pair))};
  }
  static VecAvx2 fmadd(VecAvx2 a, VecAvx2 b, VecAvx2 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  static VecAvx2 max(VecAvx2 a, VecAvx2 b) { return {_mm256_max_ps(a.v, b.v)}; }

  // 2^x: n = floor(x), a degree-5 polynomial for 2^(x - n) on [0, 1)
  // (exp2_poly.h), times 2^n
  // built in the exponent bits. Clamping to [-127, 128] maps -inf to exactly
  // 0 (biased exponent 0) and overflow to inf; the operand order of max/min
  // keeps a NaN input NaN.
  static VecAvx2 exp2(VecAvx2 x) {
    __m256 t = _mm256_max_ps(_mm256_set1_ps(-127.0f), x.v);
    t = _mm256_min_ps(_mm256_set1_ps(128.0f), t);
    const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(t, n);
    __m256 p = _mm256_set1_ps(kExp2Poly[0]);
    for (unsigned i = 1; i < sizeof kExp2Poly / sizeof kExp2Poly[0]; ++i)
      p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[i]));
    const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return {_mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23)))};
  }

  float reduce_sum() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  float reduce_max() const {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  // Whether some lane is above x or NaN (not <= x).
  bool any_above(float x) const {
    return _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(x), _CMP_NLE_UQ)) != 0;
  }
  static float exp2_scalar(float a) { return __builtin_exp2f(a); }
  static float log2_scalar(float a) { return __builtin_log2f(a); }
};

// Free functions, not in-class friends: GCC does not apply `#pragma GCC target`
// to friend functions defined inside a class.
inline VecAvx2 operator+(VecAvx2 a, VecAvx2 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VecAvx2 operator-(VecAvx2 a, VecAvx2 b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VecAvx2 operator*(VecAvx2 a, VecAvx2 b) { return {_mm256_mul_ps(a.v, b.v)}; }

}  // namespace sacolor::cpu
