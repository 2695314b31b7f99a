// The bfloat16 flash tiles (forward and backward), written once against a dot
// product `Dot` (C (+)= A B on bfloat16 operands, float32 sums: vdpbf16ps in
// tiles_avx512bf16.cpp, AMX tiles in tiles_amx.cpp) and instantiated by each
// unit inside its own namespace, as tiles_impl.h is. The softmax, the
// rounding to bfloat16 and the packing are AVX-512 code shared by both.
//
// Include only after Dot's unit has included tiles_impl.h (for row_max and
// SoftmaxRows on VecAvx512) in SACOLOR_TILES_NAMESPACE.

#include "tiles.h"

namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE {

constexpr int kLanes = 16;  // float32 lanes; a pair-panel row is 2 * kLanes bfloat16

// 16 float32 to bfloat16, round to nearest even (vcvtneps2bf16).
inline __m256i to_bf16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

inline void store_bf16(bf16_bits* p, __m512 x) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16(x));
}

// 2^x for probabilities that are rounded to bfloat16 next: a degree-3
// polynomial for 2^f, f = x - floor(x) on [0, 1) (as VecAvx512::exp2) (fitted
// with the constant term 1 for the least largest relative error: 8.6e-5, a
// forty-fifth of bfloat16's half ulp; the float32 tiles' degree 5 is for
// float32) and vscalefps for the 2^floor(x). The callers' arguments are scores
// minus a running max or a log-sum-exp: at most a rounding above 0, or -inf,
// or NaN (+inf would have made the max +inf and the argument NaN). Below -126
// (-inf included) the result is exactly 0, as in the float32 exp2; NaN stays
// NaN (the compare is unordered-true).
//
// The mask also keeps vscalefps from making float32 denormals (x in [-149,
// -126)), which bfloat16 rounding would flush anyway but which cost a
// microcode assist each: without it, the AMX forward on peaky scores (q and k
// x3) ran 16x slower.
inline __m512 exp2_bf16(__m512 x) {
  const __mmask16 normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
  const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0.07706718146800995f), f, _mm512_set1_ps(0.22764484584331512f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6951168179512024f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(normal, p, x);
}

// The same for the AMX forward's probabilities, two instructions fewer per 16
// exponentials. No mask: it runs with MXCSR's flush-to-zero and
// denormals-are-zero set (FlushDenormals), so vscalefps writes 0 where it
// would make a denormal, with no assist, and the results below -126 are the
// mask's (vreduceps of -inf is 0, which 2^-inf scales to 0; NaN stays NaN).
// Degree 2 (fitted as above): relative error 2.1e-3 at most, about one bf16
// half ulp (rms 1.4e-3); the accuracy tests' errors (64x64 and 128x128, pool
// 1 and 2, ordinary and peaky) stayed within 0.06-1.15x of PyTorch's bf16
// error, against 0.06-1.24x with degree 3 (each ratio moved by -0.20 to +0.14:
// rounding luck), and the kernel alone ran 3.6 % faster (1 thread, 128x128).
// The backward keeps degree 3.
inline __m512 exp2_bf16_ftz(__m512 x) {
  const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0.329933f), f, _mm512_set1_ps(0.6659605f));
  return _mm512_scalef_ps(_mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f)), x);
}

// MXCSR's flush-to-zero and denormals-are-zero for the scope's lifetime, the
// caller's MXCSR after it.
class FlushDenormals {
 public:
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushDenormals() { _mm_setcsr(saved_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  static constexpr unsigned int kFlushToZero = 0x8000, kDenormalsAreZero = 0x0040;
  unsigned int saved_;
};

// dst[j] = bfloat16(exp2(row[j] - shift)), 32 at a time where it can (one
// vcvtne2ps2bf16 for two vectors). The row sums come from the P V product (a
// column of ones in V), so they are sums of exactly the rounded weights it used.
inline void exp2_round_row(const float* row, int64_t len, float shift, bf16_bits* dst) {
  const __m512 s = _mm512_set1_ps(shift);
  int64_t j = 0;
  for (; j + 2 * kLanes <= len; j += 2 * kLanes) {
    const __m512 low = exp2_bf16(_mm512_sub_ps(_mm512_loadu_ps(row + j), s));
    const __m512 high = exp2_bf16(_mm512_sub_ps(_mm512_loadu_ps(row + j + kLanes), s));
    _mm512_storeu_si512(dst + j, (__m512i)_mm512_cvtne2ps_pbh(high, low));
  }
  if (j < len) store_bf16(dst + j, exp2_bf16(_mm512_sub_ps(_mm512_loadu_ps(row + j), s)));
}

// One row of P^T (a key against len queries): p = exp2(s - lse), in place in
// float32 (for dS) and rounded into dst (for dV).
inline void probability_row(float* row, const float* lse, int64_t len, bf16_bits* dst) {
  for (int64_t i = 0; i < len; i += kLanes) {
    const __m512 p = exp2_bf16(_mm512_sub_ps(_mm512_loadu_ps(row + i), _mm512_loadu_ps(lse + i)));
    _mm512_storeu_ps(row + i, p);
    store_bf16(dst + i, p);
  }
}

// The first `count` lanes set.
inline __mmask16 first_lanes(int64_t count) {
  return count >= kLanes ? __mmask16(0xffff) : count > 0 ? __mmask16((1u << count) - 1) : __mmask16(0);
}

// r[i] (16 dwords each) becomes column i of the 16 x 16 matrix they were rows of.
inline void transpose_16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // r[4 g + j], lane L: rows 4 g .. 4 g + 3 of column 4 L + j
  for (int g = 0; g < 16; g += 4) {
    r[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
    r[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
    r[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
    r[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i even_lo = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88);  // lanes 0, 2 of each
    const __m512i odd_lo = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xdd);   // lanes 1, 3
    const __m512i even_hi = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
    const __m512i odd_hi = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xdd);
    t[j] = _mm512_shuffle_i32x4(even_lo, even_hi, 0x88);
    t[j + 8] = _mm512_shuffle_i32x4(even_lo, even_hi, 0xdd);
    t[j + 4] = _mm512_shuffle_i32x4(odd_lo, odd_hi, 0x88);
    t[j + 12] = _mm512_shuffle_i32x4(odd_lo, odd_hi, 0xdd);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// One pair-panel row (16 columns of two depth neighbours) from depth rows d
// (`low`) and d + 1 (`high`), rounded to bfloat16: vcvtne2ps2bf16 puts row d + 1
// above row d; the permute interleaves them lane by lane.
inline __m512i pair_row(__m512 low, __m512 high) {
  alignas(64) static constexpr uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                          21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                          11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_permutexvar_epi16(_mm512_load_si512(kInterleave), (__m512i)_mm512_cvtne2ps_pbh(high, low));
}

// Rows d and d + 1 of dS^T = P^T * (dP^T - delta) (len queries each), rounded
// to bfloat16 twice over: as rows of dst (the left operand of dK = dS^T Q)
// and as pair-panel rows of pairs (the right operand of dQ^T = Kc^T dS^T,
// (len / 16, depth / 2, 16, 2) with panel stride pairs_ps).
inline void score_gradient_rows(const float* p_rows, const float* dp_rows, const float* delta,
                                int64_t len, bf16_bits* dst, bf16_bits* pairs, int64_t pairs_ps) {
  for (int64_t i = 0; i < len; i += kLanes) {
    const __m512 d = _mm512_loadu_ps(delta + i);
    const __m512 ds0 = _mm512_mul_ps(_mm512_loadu_ps(p_rows + i), _mm512_sub_ps(_mm512_loadu_ps(dp_rows + i), d));
    const __m512 ds1 = _mm512_mul_ps(_mm512_loadu_ps(p_rows + len + i),
                                     _mm512_sub_ps(_mm512_loadu_ps(dp_rows + len + i), d));
    store_bf16(dst + i, ds0);
    store_bf16(dst + len + i, ds1);
    _mm512_storeu_si512(pairs + i / kLanes * pairs_ps, pair_row(ds0, ds1));
  }
}

// y = gamma * rows^T + x for positions [i0, i1) of one batch element: rows
// (n, c) float32, x and y (c, n) bfloat16; rounded as the dispatcher's generic
// residual (the product, the sum, then bfloat16), 16 x 16 blocks of rows
// transposed in registers (the generic one's strided reads took 2 % of the AMX
// forward at 128x128, C = 64).
inline void residual_bf16(const float* rows, int64_t n, int64_t c, float gamma, const bf16_bits* x,
                          bf16_bits* y, int64_t i0, int64_t i1) {
  const __m512 g = _mm512_set1_ps(gamma);
  for (int64_t i = i0; i < i1; i += kLanes) {
    const int64_t positions = i1 - i < kLanes ? i1 - i : kLanes;
    const __mmask32 live = first_lanes(positions);
    for (int64_t ch = 0; ch < c; ch += kLanes) {
      const __mmask16 channels = first_lanes(c - ch);
      __m512i r[16];
      for (int j = 0; j < 16; ++j)
        r[j] = j < positions ? _mm512_maskz_loadu_epi32(channels, rows + (i + j) * c + ch) : _mm512_setzero_si512();
      transpose_16x16(r);
      for (int64_t j = 0; j < kLanes && ch + j < c; ++j) {
        const int64_t at = (ch + j) * n + i;
        const __m256i x16 = _mm512_castsi512_si256(_mm512_maskz_loadu_epi16(live, x + at));
        const __m512 xs = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x16), 16));
        // the product rounded apart (the compiler would fuse a plain multiply and add)
        const __m512 product =
            _mm512_mul_round_ps(_mm512_castsi512_ps(r[j]), g, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512 out = _mm512_add_ps(product, xs);
        _mm512_mask_storeu_epi16(y + at, live, _mm512_castsi256_si512(to_bf16(out)));
      }
    }
  }
}

// The end of a forward block: its o rows and log-sum-exps, and with p.y its y.
inline void write_block(const SoftmaxRows<VecAvx512>& st, const Bf16ForwardProblem& p, int64_t i0, int64_t rows) {
  st.write(rows, p.o + i0 * p.v_channels, p.v_channels, p.lse + i0);
  if (p.y != nullptr) residual_bf16(p.o, p.n, p.v_channels, p.gamma, p.x, p.y, i0, i0 + rows);
}

// The forward works on strips of 32 query rows (two AMX tile heights), so a
// strip's scores (32 x BN float32) stay in L1, in a software pipeline: the
// scores of the next strip are computed before the softmax of this one and
// the product with V of the previous one after it, so that no vector load
// waits for the tile stores just issued, nor a tile load for vector stores.
constexpr int64_t kBf16Strip = 32;

template <int64_t BM, int64_t BN>
int64_t forward_scratch_bf16(int64_t v_pad) {
  // two strips' scores, the softmax state, two strips' probabilities in bfloat16
  return 2 * kBf16Strip * BN + SoftmaxRows<VecAvx512>::scratch(BM, v_pad) + kBf16Strip * BN;
}

template <class Dot, int64_t BM, int64_t BN>
void forward_block_bf16(const Bf16ForwardProblem& p, int64_t block, float* scratch) {
  using Vec = VecAvx512;
  [[maybe_unused]] const typename Dot::Scope scope;  // AMX: this thread's tile configuration
  constexpr int64_t SR = kBf16Strip;
  constexpr int64_t strips = (BM + SR - 1) / SR;
  float* scores[2] = {scratch, scratch + SR * BN};  // (SR, BN) each
  // Column v_channels of P V holds the row sums (the ones column of V).
  const SoftmaxRows<Vec> st =
      SoftmaxRows<Vec>::start(scratch + 2 * SR * BN, BM, p.v_pad, /*sum_column=*/p.v_channels);
  bf16_bits* prob[2];  // (SR, BN) each
  prob[0] = reinterpret_cast<bf16_bits*>(scratch + 2 * SR * BN + SoftmaxRows<Vec>::scratch(BM, p.v_pad));
  prob[1] = prob[0] + SR * BN;
  const int64_t i0 = block * BM;
  // Step t: key block t / strips, query strip t % strips.
  const int64_t steps = p.m_pad / BN * strips;
  auto rows_of = [](int64_t t) { return BM - t % strips * SR < SR ? BM - t % strips * SR : SR; };
  auto scores_of = [&](int64_t t) {
    const int64_t j0 = t / strips * BN, r0 = t % strips * SR;
    Dot::dot(rows_of(t), BN, p.qk2, p.q + (i0 + r0) * p.qk2, p.qk2, p.kt + j0 * p.qk2,
             p.qk2 * kLanes, scores[t % 2], BN, false);
  };
  auto times_values = [&](int64_t t) {
    const int64_t j0 = t / strips * BN, r0 = t % strips * SR;
    Dot::dot(rows_of(t), p.v_pad, BN, prob[t % 2], BN, p.v + j0 * kLanes, p.m_pad * kLanes,
             st.acc + r0 * p.v_pad, p.v_pad, true);
  };
  scores_of(0);
  for (int64_t t = 0; t < steps; ++t) {
    if (t + 1 < steps) scores_of(t + 1);
    const int64_t j0 = t / strips * BN, r0 = t % strips * SR;
    const int64_t valid = p.m - j0 < BN ? p.m - j0 : BN;
    for (int64_t i = 0; i < rows_of(t); ++i) {
      float* row = scores[t % 2] + i * BN;
      for (int64_t j = valid; j < BN; ++j) row[j] = -__builtin_inff();
      exp2_round_row(row, BN, st.advance(r0 + i, row_max<Vec>(row, BN, st.run_max[r0 + i])),
                     prob[t % 2] + i * BN);
    }
    if (t > 0) times_values(t - 1);
  }
  times_values(steps - 1);
  const int64_t rows = p.n - i0 < BM ? p.n - i0 : BM;
  write_block(st, p, i0, rows);
}

template <int64_t BM, int64_t BN>
int64_t backward_scratch_bf16() {
  // P^T and dP^T in float32; P^T, dS^T and dS^T's pair panels in bfloat16
  return 2 * BN * BM + 3 * BN * BM / 2;
}

// One key block against every query block; scores transposed (keys are rows).
template <class Dot, int64_t BM, int64_t BN>
void backward_block_bf16(const Bf16BackwardProblem& p, int64_t block, float* scratch) {
  [[maybe_unused]] const typename Dot::Scope scope;  // AMX: this thread's tile configuration
  float* pt = scratch;        // (BN, BM) P^T
  float* dst = pt + BN * BM;  // (BN, BM) dP^T
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
    Dot::dot(BN, BM, p.qk2, p.k + j0 * p.qk2, p.qk2, p.qt + i0 * p.qk2, p.qk2 * kLanes, pt, BM, false);
    for (int64_t j = 0; j < BN; ++j) {
      if (j < valid) {
        probability_row(pt + j * BM, p.lse2 + i0, BM, pt16 + j * BM);
      } else {  // padded keys take no probability
        for (int64_t i = 0; i < BM; ++i) pt[j * BM + i] = 0.0f;
        for (int64_t i = 0; i < BM; ++i) pt16[j * BM + i] = 0;
      }
    }
    // dV += P^T dO
    Dot::dot(BN, p.v_pad, BM, pt16, BM, p.dout + i0 * kLanes, p.n_pad * kLanes, dv, p.v_pad, true);
    // dP^T = V dO^T, then dS^T = P^T * (dP^T - delta), rounded straight into both layouts
    Dot::dot(BN, BM, p.v2, p.v + j0 * p.v2, p.v2, p.doutt + i0 * p.v2, p.v2 * kLanes, dst, BM, false);
    for (int64_t j = 0; j < BN; j += 2)
      score_gradient_rows(pt + j * BM, dst + j * BM, p.delta + i0, BM, dst16 + j * BM,
                          ds_pairs + j * kLanes, BN * kLanes);
    // dK += dS^T Q; dQ^T += Kc^T dS^T
    Dot::dot(BN, p.qk_pad, BM, dst16, BM, p.q + i0 * kLanes, p.n_pad * kLanes, dk, p.qk_pad, true);
    Dot::dot(p.qk_rows, BM, BN, p.kct + j0, p.m_pad, ds_pairs, BN * kLanes, p.dqt + i0, p.n_pad, true);
  }
}

}  // namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE

namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE {

// Blocks of BM queries, values in pair panels, no shift row; the dispatcher packs the operands.
template <int64_t BM>
Bf16ForwardLayout plain_layout(int64_t /*qk*/, int64_t /*v_channels*/, int64_t /*n*/, int64_t /*threads*/) {
  return {BM, 0, false, false};
}

template <class Dot, int64_t BM, int64_t BN>
constexpr Bf16KernelTable make_bf16_table(const char* isa) {
  static_assert(BM % Dot::depth_multiple == 0 && BN % Dot::depth_multiple == 0 &&
                    BM % Dot::row_multiple == 0 && BN % Dot::row_multiple == 0,
                "blocks must be whole depth steps and whole row tiles");
  return Bf16KernelTable{isa, BM, BN, kLanes, Dot::depth_multiple, Dot::row_multiple,
                         &forward_scratch_bf16<BM, BN>, &plain_layout<BM>,
                         &backward_scratch_bf16<BM, BN>,
                         &forward_block_bf16<Dot, BM, BN>, &backward_block_bf16<Dot, BM, BN>,
                         &residual_bf16, 0, nullptr, nullptr};
}

}  // namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE
