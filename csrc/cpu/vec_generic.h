// Portable vector of W lanes as a plain array: the compiler auto-vectorises it
// for whatever baseline the build targets (SSE2 on x86-64, NEON on arm64).
#pragma once

#include <cmath>

namespace sacolor::cpu {

template <typename Scalar, int W>
struct VecGeneric {
  using T = Scalar;
  static constexpr int width = W;
  static constexpr int registers = 16;
  T lane[W];

  static VecGeneric load(const T* p) {
    VecGeneric r;
    for (int i = 0; i < W; ++i) r.lane[i] = p[i];
    return r;
  }
  void store(T* p) const {
    for (int i = 0; i < W; ++i) p[i] = lane[i];
  }
  void store_first(T* p, int n) const {
    for (int i = 0; i < n; ++i) p[i] = lane[i];
  }
  static VecGeneric broadcast(T a) {
    VecGeneric r;
    for (int i = 0; i < W; ++i) r.lane[i] = a;
    return r;
  }
  static VecGeneric zero() { return broadcast(T(0)); }
  // p[0], p[1], p[0], p[1], ...
  static VecGeneric broadcast_pair(const T* p) {
    VecGeneric r;
    for (int i = 0; i < W; ++i) r.lane[i] = p[i % 2];
    return r;
  }
  static VecGeneric fmadd(const VecGeneric& a, const VecGeneric& b, const VecGeneric& c) {
    VecGeneric r;
    for (int i = 0; i < W; ++i) r.lane[i] = a.lane[i] * b.lane[i] + c.lane[i];
    return r;
  }
  friend VecGeneric operator+(const VecGeneric& a, const VecGeneric& b) {
    VecGeneric r;
    for (int i = 0; i < W; ++i) r.lane[i] = a.lane[i] + b.lane[i];
    return r;
  }
  friend VecGeneric operator-(const VecGeneric& a, const VecGeneric& b) {
    VecGeneric r;
    for (int i = 0; i < W; ++i) r.lane[i] = a.lane[i] - b.lane[i];
    return r;
  }
  friend VecGeneric operator*(const VecGeneric& a, const VecGeneric& b) {
    VecGeneric r;
    for (int i = 0; i < W; ++i) r.lane[i] = a.lane[i] * b.lane[i];
    return r;
  }
  static VecGeneric max(const VecGeneric& a, const VecGeneric& b) {
    VecGeneric r;
    for (int i = 0; i < W; ++i) r.lane[i] = b.lane[i] > a.lane[i] ? b.lane[i] : a.lane[i];
    return r;
  }
  static VecGeneric exp2(const VecGeneric& a) {
    VecGeneric r;
    for (int i = 0; i < W; ++i) r.lane[i] = std::exp2(a.lane[i]);
    return r;
  }
  T reduce_sum() const {
    T s = lane[0];
    for (int i = 1; i < W; ++i) s += lane[i];
    return s;
  }
  T reduce_max() const {
    T m = lane[0];
    for (int i = 1; i < W; ++i) m = lane[i] > m ? lane[i] : m;
    return m;
  }
  // Whether some lane is above x or NaN (not <= x).
  bool any_above(T x) const {
    for (int i = 0; i < W; ++i)
      if (!(lane[i] <= x)) return true;
    return false;
  }
  static T exp2_scalar(T a) { return std::exp2(a); }
  static T log2_scalar(T a) { return std::log2(a); }
};

}  // namespace sacolor::cpu
