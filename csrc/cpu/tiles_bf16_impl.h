// The bfloat16 flash tiles (forward and backward), written once against a dot
// product `Dot` (C (+)= A B on bfloat16 operands, float32 sums: vdpbf16ps in
// tiles_avx512bf16.cpp, AMX tiles in tiles_amx.cpp) and instantiated by each
// unit inside its own namespace, as tiles_impl.h is. The softmax, the
// rounding to bfloat16 and the packing are AVX-512 code shared by both.
//
// Include only after Dot's unit has included tiles_impl.h (for row_max,
// exp2_row, finite_or_zero_max on VecAvx512) in SACOLOR_TILES_NAMESPACE.

#include "tiles.h"

namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE {

constexpr int kLanes = 16;  // float32 lanes; a pair-panel row is 2 * kLanes bfloat16

// 16 float32 to bfloat16, round to nearest even (vcvtneps2bf16).
inline void store_bf16(bf16_bits* p, __m512 x) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(x));
}

// rows x len float32 (row-major, ld) to bfloat16 (row-major, len apart); len % 16 == 0.
void round_rows(const float* src, int64_t rows, int64_t len, bf16_bits* dst) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < len; j += kLanes) store_bf16(dst + i * len + j, _mm512_loadu_ps(src + i * len + j));
}

// dst[j] = bfloat16(exp2(row[j] - shift)); returns the sum of the rounded
// values, so the normalisation divides by the weights P V actually used.
inline float exp2_round_row(const float* row, int64_t len, float shift, bf16_bits* dst) {
  using Vec = VecAvx512;
  const Vec s = Vec::broadcast(shift);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < len; j += kLanes) {
    const __m256bh rounded = _mm512_cvtneps_pbh(Vec::exp2(Vec::load(row + j) - s).v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j), (__m256i)rounded);
    const __m512i widened = _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)rounded), 16);
    sum = _mm512_add_ps(sum, _mm512_castsi512_ps(widened));
  }
  return _mm512_reduce_add_ps(sum);
}

// src (rows x cols) float32, row-major, as the right-hand operand (depth =
// rows, even) in pair panels: (cols / 16, rows / 2, 16, 2).
void pack_pairs(const float* src, int64_t rows, int64_t cols, bf16_bits* dst) {
  // vcvtne2ps2bf16 puts row d + 1 above row d; this interleaves them lane by lane.
  alignas(64) static constexpr uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                          21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                          11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i interleave = _mm512_load_si512(kInterleave);
  for (int64_t d = 0; d < rows; d += 2)
    for (int64_t j = 0; j < cols; j += kLanes) {
      const __m512bh both = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + (d + 1) * cols + j),
                                                _mm512_loadu_ps(src + d * cols + j));
      _mm512_storeu_si512(dst + j / kLanes * rows * kLanes + d * kLanes,
                          _mm512_permutexvar_epi16(interleave, (__m512i)both));
    }
}

template <int64_t BM, int64_t BN>
int64_t forward_scratch_bf16(int64_t v_pad) {
  // scores, unnormalised o, running max and sum, probabilities in bfloat16
  return BM * BN + BM * v_pad + 2 * BM + BM * BN / 2;
}

template <class Dot, int64_t BM, int64_t BN>
void forward_block_bf16(const Bf16ForwardProblem& p, int64_t block, float* scratch) {
  using Vec = VecAvx512;
  const typename Dot::Scope scope;  // AMX: this thread's tile configuration
  const float neg_inf = -__builtin_inff();
  float* s = scratch;                  // (BM, BN) scores, then probabilities
  float* acc = s + BM * BN;            // (BM, v_pad) unnormalised o
  float* run_max = acc + BM * p.v_pad;  // (BM,)
  float* run_sum = run_max + BM;       // (BM,)
  bf16_bits* prob = reinterpret_cast<bf16_bits*>(run_sum + BM);  // (BM, BN)
  const int64_t i0 = block * BM;
  const bf16_bits* q = p.q + i0 * p.qk2;
  for (int64_t i = 0; i < BM * p.v_pad; ++i) acc[i] = 0.0f;
  for (int64_t i = 0; i < BM; ++i) {
    run_max[i] = neg_inf;
    run_sum[i] = 0.0f;
  }
  for (int64_t j0 = 0; j0 < p.m_pad; j0 += BN) {
    Dot::dot(BM, BN, p.qk2, q, p.qk2, p.kt + j0 * p.qk2, p.qk2 * kLanes, s, BN, false);
    const int64_t valid = p.m - j0 < BN ? p.m - j0 : BN;
    for (int64_t i = 0; i < BM; ++i) {
      float* row = s + i * BN;
      for (int64_t j = valid; j < BN; ++j) row[j] = neg_inf;
      const float shift = advance_max<Vec>(row_max<Vec>(row, BN), run_max[i], run_sum[i],
                                           acc + i * p.v_pad, p.v_pad);
      run_sum[i] += exp2_round_row(row, BN, shift, prob + i * BN);
    }
    Dot::dot(BM, p.v_pad, BN, prob, BN, p.v + j0 * kLanes, p.m_pad * kLanes, acc, p.v_pad, true);
  }
  const int64_t rows = p.n - i0 < BM ? p.n - i0 : BM;
  write_output_rows<Vec>(acc, p.v_pad, run_max, run_sum, rows, p.o + i0 * p.v_channels,
                         p.v_channels, p.lse + i0);
}

template <int64_t BM, int64_t BN>
int64_t backward_scratch_bf16() {
  // P^T and dP^T / dS^T in float32; P^T, dS^T and dS^T's pair panels in bfloat16
  return 2 * BN * BM + 3 * BN * BM / 2;
}

// One key block against every query block; scores transposed (keys are rows).
template <class Dot, int64_t BM, int64_t BN>
void backward_block_bf16(const Bf16BackwardProblem& p, int64_t block, float* scratch) {
  using Vec = VecAvx512;
  const typename Dot::Scope scope;  // AMX: this thread's tile configuration
  float* pt = scratch;        // (BN, BM) P^T
  float* dst = pt + BN * BM;  // (BN, BM) dP^T, then dS^T
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
      float* row = pt + j * BM;
      if (j >= valid) {  // padded keys take no probability
        for (int64_t i = 0; i < BM; ++i) row[i] = 0.0f;
        continue;
      }
      for (int64_t i = 0; i < BM; i += kLanes)
        Vec::exp2(Vec::load(row + i) - Vec::load(p.lse2 + i0 + i)).store(row + i);
    }
    round_rows(pt, BN, BM, pt16);
    // dV += P^T dO
    Dot::dot(BN, p.v_pad, BM, pt16, BM, p.dout + i0 * kLanes, p.n_pad * kLanes, dv, p.v_pad, true);
    // dP^T = V dO^T, then dS^T = P^T * (dP^T - delta)
    Dot::dot(BN, BM, p.v2, p.v + j0 * p.v2, p.v2, p.doutt + i0 * p.v2, p.v2 * kLanes, dst, BM, false);
    for (int64_t j = 0; j < BN; ++j) {
      float* ds_row = dst + j * BM;
      const float* p_row = pt + j * BM;
      for (int64_t i = 0; i < BM; i += kLanes)
        (Vec::load(p_row + i) * (Vec::load(ds_row + i) - Vec::load(p.delta + i0 + i)))
            .store(ds_row + i);
    }
    round_rows(dst, BN, BM, dst16);
    pack_pairs(dst, BN, BM, ds_pairs);
    // dK += dS^T Q; dQ^T += Kc^T dS^T
    Dot::dot(BN, p.qk_pad, BM, dst16, BM, p.q + i0 * kLanes, p.n_pad * kLanes, dk, p.qk_pad, true);
    Dot::dot(p.qk_rows, BM, BN, p.kct + j0, p.m_pad, ds_pairs, BN * kLanes, p.dqt + i0, p.n_pad, true);
  }
}

}  // namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE

namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE {

template <class Dot, int64_t BM, int64_t BN>
constexpr Bf16KernelTable make_bf16_table(const char* isa) {
  static_assert(BM % Dot::depth_multiple == 0 && BN % Dot::depth_multiple == 0 &&
                    BM % Dot::row_multiple == 0 && BN % Dot::row_multiple == 0,
                "blocks must be whole depth steps and whole row tiles");
  return Bf16KernelTable{isa, BM, BN, kLanes, Dot::depth_multiple, Dot::row_multiple,
                         &forward_scratch_bf16<BM, BN>, &backward_scratch_bf16<BM, BN>,
                         &forward_block_bf16<Dot, BM, BN>, &backward_block_bf16<Dot, BM, BN>};
}

}  // namespace sacolor::cpu::SACOLOR_TILES_NAMESPACE
