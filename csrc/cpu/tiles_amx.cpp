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

namespace sacolor::cpu::amx {
namespace {

// The forward fused on the tile unit, for one strip of 16 queries at a time,
// its output O held in tiles 0 .. NV - 1 (NV = v_channels / 16 rounded up,
// at most 4) across a chunk of keys: the generic products above load and
// store their C tiles around every call. Tile 4 holds the strip's queries
// (as deep as qk + 1: loaded once a strip), 5 the keys of 16 (as deep: 5
// of a full tile's 16 pair rows at qk = 8), 6 the scores of 16 keys and then V's
// panels, 7 the probabilities. The row sums are the float32 probabilities'
// sums, added by the softmax (a ones column in V would take a fifth O tile).
//
// The softmax's shift rides in the score product, whose depth costs nothing
// below a full tile's: the queries' column qk holds each row's -shift (the
// block's copy of its queries), the keys' row qk is 1 (Bf16ForwardLayout::
// shift_row), so the tile unit writes S - shift and the softmax subtracts
// nothing (two vsubps and a broadcast a row of 32 scores; 1 thread, 128x128,
// the kernel alone: -2 %). A shift is a bfloat16 value, so the product holds
// it exactly; qk = 32 leaves no room for it and takes the generic tiles.
//
// The softmax is lazy (as in FlashAttention-4): a row keeps its shift (the
// running max at its last rescale) until a score exceeds it by more than
// kLazyShift, so O is touched only then; until then probabilities go up to
// 2^kLazyShift, which bfloat16 and the float32 sums hold exactly as well as
// probabilities up to 1 (the same relative rounding), far from overflow (the
// sums are at most 2^16 times the number of keys times the largest value).
constexpr int64_t kFusedRows = 16;  // queries per strip: one tile's height
constexpr int64_t kFusedStep = 32;  // keys per step: one A tile's depth
constexpr int kFusedPanels = 4;     // O tiles, beside the four operand tiles
constexpr float kLazyShift = 16.0f;
// The softmax checks the sums of pairs of probabilities, which is cheaper than
// the scores: a pair above 2^kLazyShift has a probability above 2^(kLazyShift
// - 1), whose row then moves (it is more than kLazyShift - 2 above its shift).
constexpr float kLazyBound = 65536.0f;  // 2^kLazyShift

// Whether a problem takes the fused forward: qk and the shift column within
// one tile's depth, the values' columns (v_channels, not the ones column) in
// kFusedPanels tiles.
inline bool fused_forward(int64_t qk, int64_t v_channels) {
  return qk < kFusedStep && v_channels <= kFusedPanels * kLanes;
}

// x rounded up to a bfloat16 value (NaN stays NaN): a row's shift, at or
// above the max it is set from, so its probabilities then are at most 1.
inline float bf16_ceil(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  uint32_t up = u & 0xffff0000u;
  if (up != u && !(u >> 31)) up += 0x10000u;  // a positive x away from 0, a negative one towards it
  float r;
  std::memcpy(&r, &up, sizeof r);
  return r;
}

// The bits of a float that is a bfloat16 value.
inline bf16_bits bf16_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return static_cast<bf16_bits>(u >> 16);
}

template <int64_t BM>
int64_t fused_forward_scratch(int64_t v_pad) {
  // two steps' scores (16 x 32 float32) and probabilities (16 x 32 bfloat16),
  // the block's queries (BM x 32 bfloat16), the rows' sums twice over (16
  // lanes each), their shifts, the softmax state
  return 2 * kFusedRows * kFusedStep * 3 / 2 + BM * kFusedStep / 2 + 2 * BM * kLanes + BM +
         SoftmaxRows<VecAvx512>::scratch(BM, v_pad);
}

// Tiles 0-3 and 6-7 16 rows of 64 bytes; 4 (Q) 16 rows and 5 (K) `pairs`
// rows of 4 * pairs bytes and 64 bytes: `pairs` pair rows of depth, (qk + 1)
// / 2 rounded up. Loaded for each block and released after it, as TileDot::Scope.
struct FusedScope {
  explicit FusedScope(int64_t pairs) {
    TileConfig config;
    config.colsb[4] = static_cast<uint16_t>(4 * pairs);
    config.rows[5] = static_cast<uint8_t>(pairs);
    _tile_loadconfig(&config);
  }
  ~FusedScope() { _tile_release(); }
  FusedScope(const FusedScope&) = delete;
  FusedScope& operator=(const FusedScope&) = delete;
};

template <int NV>
inline void load_o(const float* acc, int64_t stride) {
  _tile_loadd(0, acc, stride);
  if constexpr (NV > 1) _tile_loadd(1, acc + 16, stride);
  if constexpr (NV > 2) _tile_loadd(2, acc + 32, stride);
  if constexpr (NV > 3) _tile_loadd(3, acc + 48, stride);
}

template <int NV>
inline void store_o(float* acc, int64_t stride) {
  _tile_stored(0, acc, stride);
  if constexpr (NV > 1) _tile_stored(1, acc + 16, stride);
  if constexpr (NV > 2) _tile_stored(2, acc + 32, stride);
  if constexpr (NV > 3) _tile_stored(3, acc + 48, stride);
}

// O += P V for one step: P (16 x 32 bfloat16, rows 64 bytes apart) into tile
// 7, V's panels (the step's pair rows, panel_stride apart) into tile 6 in turn.
template <int NV>
inline void times_values(const bf16_bits* prob, const bf16_bits* v, int64_t panel_stride) {
  _tile_loadd(7, prob, 64);
  _tile_loadd(6, v, 64);
  _tile_dpbf16ps(0, 7, 6);
  if constexpr (NV > 1) {
    _tile_loadd(6, v + panel_stride, 64);
    _tile_dpbf16ps(1, 7, 6);
  }
  if constexpr (NV > 2) {
    _tile_loadd(6, v + 2 * panel_stride, 64);
    _tile_dpbf16ps(2, 7, 6);
  }
  if constexpr (NV > 3) {
    _tile_loadd(6, v + 3 * panel_stride, 64);
    _tile_dpbf16ps(3, 7, 6);
  }
}

// The scores of one step against the queries in tile 4: (16 x 32) float32,
// rows 128 bytes apart, 16 keys per product.
inline void step_scores(const bf16_bits* kt, int64_t qk2, float* s) {
  _tile_zero(6);
  _tile_loadd(5, kt, 64);
  _tile_dpbf16ps(6, 4, 5);
  _tile_stored(6, s, kFusedStep * 4);
  _tile_zero(6);
  _tile_loadd(5, kt + qk2 * kLanes, 64);
  _tile_dpbf16ps(6, 4, 5);
  _tile_stored(6, s + kLanes, kFusedStep * 4);
}

// P = bfloat16(exp2(S - shift)) for one step's 16 rows from s = S - shift;
// each row's sum (16 lanes) plus its float32 probabilities goes to `sums_out`
// (the step may be done again from the same `sums`); with CHECK, whether some
// score exceeds its row's shift by more than kLazyShift (NaN does not: vmaxps
// returns its second operand, the running max, when the first is NaN).
template <bool CHECK>
inline bool step_probabilities(const float* s, const float* sums, float* sums_out, bf16_bits* prob) {
  // Four running maxima, rows i % 4: one would chain 32 vmaxps a step. The
  // loop unrolled, so that they stay in registers (rolled, they went through
  // memory each row: 1 thread, 128x128, the kernel alone 4 % slower).
  __m512 most[4];
  for (__m512& m : most) m = _mm512_set1_ps(-__builtin_inff());
#pragma GCC unroll 16
  for (int64_t i = 0; i < kFusedRows; ++i) {
    const __m512 p0 = exp2_bf16_ftz(_mm512_loadu_ps(s + i * kFusedStep));
    const __m512 p1 = exp2_bf16_ftz(_mm512_loadu_ps(s + i * kFusedStep + kLanes));
    _mm512_storeu_si512(prob + i * kFusedStep, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
    const __m512 pair_sums = _mm512_add_ps(p0, p1);
    _mm512_storeu_ps(sums_out + i * kLanes, _mm512_add_ps(_mm512_loadu_ps(sums + i * kLanes), pair_sums));
    if constexpr (CHECK) most[i % 4] = _mm512_max_ps(pair_sums, most[i % 4]);
  }
  // A probability above 2^kLazyShift makes its pair's sum so (+inf included).
  const __m512 top = _mm512_max_ps(_mm512_max_ps(most[0], most[1]), _mm512_max_ps(most[2], most[3]));
  return CHECK && _mm512_cmp_ps_mask(top, _mm512_set1_ps(kLazyBound), _CMP_GT_OQ) != 0;
}

template <int NV, int64_t BM, int64_t BN>
void fused_forward_block(const Bf16ForwardProblem& p, int64_t block, float* scratch) {
  using Vec = VecAvx512;
  [[maybe_unused]] const FusedScope scope((p.qk + 2) / 2);
  float* scores[2] = {scratch, scratch + kFusedRows * kFusedStep};
  bf16_bits* prob[2];
  prob[0] = reinterpret_cast<bf16_bits*>(scratch + 2 * kFusedRows * kFusedStep);
  prob[1] = prob[0] + kFusedRows * kFusedStep;
  const int64_t i0 = block * BM;
  // The block's queries, (BM, 32), column qk each row's -shift (0 at first).
  bf16_bits* queries_shifted = prob[1] + kFusedRows * kFusedStep;
  for (int64_t i = 0; i < BM; ++i) {
    bf16_bits* row = queries_shifted + i * kFusedStep;
    std::memcpy(row, p.q + (i0 + i) * p.qk2, p.qk * sizeof(bf16_bits));
    std::memset(row + p.qk, 0, (kFusedStep - p.qk) * sizeof(bf16_bits));
  }
  // The rows' sums of probabilities, (BM, 16) twice: a step reads one and
  // writes the other, so a step done again (a row's shift moved) starts
  // from the sums before it.
  float* sums[2] = {scratch + 2 * kFusedRows * kFusedStep * 3 / 2 + BM * kFusedStep / 2, nullptr};
  sums[1] = sums[0] + BM * kLanes;
  float* shift = sums[1] + BM * kLanes;  // (BM,): finite_or_zero_max(run_max), a bfloat16 value
  for (int64_t i = 0; i < BM * kLanes; ++i) sums[0][i] = 0.0f;
  for (int64_t i = 0; i < BM; ++i) shift[i] = 0.0f;
  int side[BM / kFusedRows] = {};  // which of sums holds a strip's rows
  // O's column v_channels (v_pad > v_channels) takes the sums at the end, for st.write.
  const SoftmaxRows<Vec> st = SoftmaxRows<Vec>::start(shift + BM, BM, p.v_pad, /*sum_column=*/p.v_channels);
  const int64_t rows = p.n - i0 < BM ? p.n - i0 : BM;
  const int64_t o_stride = p.v_pad * 4, v_panel = kFusedStep * kLanes;  // values in steps
  // Whether a strip has a row with no finite max yet (every row, at first):
  // its rows' shifts are 0 and mean nothing, so each step moves them eagerly
  // (a shift must stay within kLazyShift below the row's max, or its
  // probabilities would underflow).
  bool unset[BM / kFusedRows];
  for (bool& u : unset) u = true;
  // One pipeline over every (chunk of keys, strip, step) in that order: the
  // next item's scores go to the tile unit before this item's softmax, the
  // previous item's P V after it, also across strips and chunks, so that no
  // vector load waits for the tile stores just issued, nor a tile load for
  // the vector stores. Steps wholly of padded keys are skipped.
  struct Item {
    int64_t c0, r0, t;  // chunk's first key, strip's first row, step in the chunk
    int64_t n;          // the item's place in the pipeline
  };
  auto steps_of = [&](int64_t c0) { return ((p.m - c0 < BN ? p.m - c0 : BN) + kFusedStep - 1) / kFusedStep; };
  auto next = [&](Item it) {
    ++it.n;
    if (++it.t < steps_of(it.c0)) return it;
    it.t = 0;
    if ((it.r0 += kFusedRows) < rows) return it;
    it.r0 = 0;
    it.c0 += BN;
    return it;
  };
  auto buffer = [](const Item& it) { return it.n % 2; };
  int64_t queries = -1;  // the strip whose queries tile 4 holds
  auto scores_of = [&](const Item& it) {
    if (queries != it.r0) _tile_loadd(4, queries_shifted + it.r0 * kFusedStep, kFusedStep * 2);
    queries = it.r0;
    float* s = scores[buffer(it)];
    const int64_t j0 = it.c0 + it.t * kFusedStep;
    step_scores(p.kt + j0 * p.qk2, p.qk2, s);
    // The last step's padded keys score -inf.
    for (int64_t i = 0; i < kFusedRows && p.m - j0 < kFusedStep; ++i)
      for (int64_t j = p.m - j0; j < kFusedStep; ++j) s[i * kFusedStep + j] = -__builtin_inff();
  };
  int64_t held = -1;  // the strip whose O tiles 0 .. NV - 1 hold
  auto hold = [&](int64_t r0) {
    if (held == r0) return;
    if (held >= 0) store_o<NV>(st.acc + held * p.v_pad, o_stride);
    load_o<NV>(st.acc + r0 * p.v_pad, o_stride);
    held = r0;
  };
  auto times_values_of = [&](const Item& it) {
    hold(it.r0);
    times_values<NV>(prob[buffer(it)], p.v + (it.c0 + it.t * kFusedStep) * p.v_pad, v_panel);
  };
  {
    // Denormals flushed: the probabilities' exp2 needs no mask so (exp2_bf16_ftz),
    // and a rescale by less than 2^-126 (a row's max moved by more) gives 0.
    const FlushDenormals flush;
    Item prev{}, cur{0, 0, 0, 0};
    bool pending = false;  // prev's P V not yet added
    scores_of(cur);
    while (cur.c0 < p.m) {
      const Item after = next(cur);
      if (after.c0 < p.m) scores_of(after);
      const float* s = scores[buffer(cur)];
      bf16_bits* pr = prob[buffer(cur)];
      const int64_t strip = cur.r0 / kFusedRows;
      const float* sums_in = sums[side[strip]] + cur.r0 * kLanes;
      float* sums_out = sums[1 - side[strip]] + cur.r0 * kLanes;
      if (step_probabilities<true>(s, sums_in, sums_out, pr) || unset[strip]) {
        // Some row moved past its shift, or has had no finite max yet: its O
        // and sum, complete to the previous step, are rescaled in memory, its
        // queries take the new shift, and this step's scores (and the next
        // step's, if of this strip) and probabilities are done again.
        if (pending) times_values_of(prev);
        pending = false;
        if (held == cur.r0) store_o<NV>(st.acc + held * p.v_pad, o_stride);
        unset[strip] = false;
        bool moved = false;
        for (int64_t i = cur.r0; i < cur.r0 + kFusedRows; ++i) {
          // s holds the scores minus the old shift, which is the old max where that is finite
          const float old_max = st.run_max[i], old_shift = shift[i];
          const float* row = s + (i - cur.r0) * kFusedStep;
          const float bm = row_max<Vec>(row, kFusedStep, old_max - old_shift) + old_shift;
          if (bm - old_max > kLazyShift - 2 || (old_max == -__builtin_inff() && bm > old_max)) {
            shift[i] = st.advance(i, bf16_ceil(bm));
            // as advance scales O
            if (st.run_max[i] != old_max) {
              float* sum = sums[side[strip]] + i * kLanes;
              (Vec::load(sum) * Vec::broadcast(Vec::exp2_scalar(old_max - shift[i]))).store(sum);
              queries_shifted[i * kFusedStep + p.qk] = bf16_of(-shift[i]);
              moved = true;
            }
          }
          unset[strip] |= st.run_max[i] == -__builtin_inff();
        }
        if (held == cur.r0) load_o<NV>(st.acc + held * p.v_pad, o_stride);
        if (moved) {
          queries = -1;
          scores_of(cur);
          if (after.c0 < p.m && after.r0 == cur.r0) scores_of(after);
        }
        step_probabilities<false>(s, sums_in, sums_out, pr);
      }
      side[strip] = 1 - side[strip];
      if (pending) times_values_of(prev);
      pending = true;
      prev = cur;
      cur = after;
    }
    if (pending) times_values_of(prev);
  }
  if (held >= 0) store_o<NV>(st.acc + held * p.v_pad, o_stride);
  for (int64_t i = 0; i < rows; ++i)
    st.acc[i * p.v_pad + p.v_channels] = Vec::load(sums[side[i / kFusedRows]] + i * kLanes).reduce_sum();
  write_block(st, p, i0, rows);
}

// ---- the fused forward's operands from x (Bf16OperandsProblem) ----------

// Positions per forward_operands call: two steps of keys, four row tiles.
constexpr int64_t kOperandRows = 2 * kFusedStep;

int64_t operands_scratch(int64_t c2, int64_t out_pad) {
  // x^T (rows x c2 bfloat16), then the products (rows x out_pad float32)
  return kOperandRows * c2 / 2 + kOperandRows * out_pad;
}

// Rows [n0, n0 + 16) of x^T (c2 bfloat16 each, zero past the channels and the
// n positions) from x (channels, n): 32 channels at a time, the two rows of
// each channel pair interleaved into one dword per position, the 16 x 16
// dwords transposed.
inline void x_rows_transposed(const bf16_bits* x, int64_t channels, int64_t n, int64_t n0, int64_t c2,
                              bf16_bits* out) {
  const int64_t valid = n - n0 < kLanes ? (n - n0 > 0 ? n - n0 : 0) : kLanes;
  const __mmask32 mask = static_cast<__mmask32>((1u << valid) - 1);
  auto row = [&](int64_t c) {  // channel c's 16 positions, zero-extended to dwords
    if (c >= channels) return _mm512_setzero_si512();
    return _mm512_cvtepu16_epi32(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(mask, x + c * n + n0)));
  };
  for (int64_t c0 = 0; c0 < c2; c0 += 2 * kLanes) {
    __m512i r[16];
    for (int i = 0; i < 16; ++i)
      r[i] = _mm512_or_si512(row(c0 + 2 * i), _mm512_slli_epi32(row(c0 + 2 * i + 1), 16));
    transpose_16x16(r);
    for (int i = 0; i < 16; ++i) _mm512_storeu_si512(out + i * c2 + c0, r[i]);
  }
}

// C = x^T W^T (positions as rows, all 2 qk + v outputs as columns) on the
// tile unit, then each row's queries, each pair of channels of 16 keys, and
// each pair of keys' values, the bias added, rounded and packed.
void forward_operands(const Bf16OperandsProblem& p, int64_t block, float* scratch) {
  const int64_t n0 = block * kOperandRows;
  bf16_bits* xt = reinterpret_cast<bf16_bits*>(scratch);  // (kOperandRows, c2)
  float* c = scratch + kOperandRows * p.c2 / 2;             // (kOperandRows, out_pad)
  for (int64_t r = 0; r < kOperandRows; r += kLanes)
    x_rows_transposed(p.x, p.channels, p.n, n0 + r, p.c2, xt + r * p.c2);
  {
    [[maybe_unused]] const TileDot::Scope scope;
    TileDot::dot(kOperandRows, p.out_pad, p.c2, xt, p.c2, p.w, p.c2 * kLanes, c, p.out_pad, false);
  }
  // Queries: (c + bq) * q_factor, float32 for q_scaled, rounded for q (qk2 = 32, zero past qk).
  const __mmask16 q_low = first_lanes(p.qk), q_high = first_lanes(p.qk - kLanes);
  const __m512 factor = _mm512_set1_ps(p.q_factor);
  const __m512 bq_low = _mm512_maskz_loadu_ps(q_low, p.bias), bq_high = _mm512_maskz_loadu_ps(q_high, p.bias + kLanes);
  for (int64_t r = 0; r < kOperandRows; ++r) {
    const int64_t i = n0 + r;
    const float* row = c + r * p.out_pad;
    __m512 low = _mm512_maskz_mul_ps(q_low, _mm512_add_ps(_mm512_maskz_loadu_ps(q_low, row), bq_low), factor);
    __m512 high =
        _mm512_maskz_mul_ps(q_high, _mm512_add_ps(_mm512_maskz_loadu_ps(q_high, row + kLanes), bq_high), factor);
    if (i < p.n) {
      _mm512_mask_storeu_ps(p.q_scaled + i * p.qk, q_low, low);
      _mm512_mask_storeu_ps(p.q_scaled + i * p.qk + kLanes, q_high, high);
    } else {  // padded queries: zero, as the dispatcher's own packing leaves them
      low = high = _mm512_setzero_ps();
    }
    _mm512_storeu_si512(p.q + i * p.qk2, (__m512i)_mm512_cvtne2ps_pbh(high, low));
  }
  if (n0 >= p.m_pad) return;
  // Keys: pair row d / 2 of a panel of 16 keys holds channels d, d + 1 of each
  // key side by side, which are neighbours in c's rows too: one 64-bit gather
  // per key. Channel qk is the shift row (1), channels past it 0; so are the
  // padded keys' channels below qk.
  const int64_t pairs = (p.qk + 2) / 2;
  const __m512i key_rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                              _mm512_set1_epi32(static_cast<int>(p.out_pad)));
  for (int64_t r0 = 0; r0 < kOperandRows; r0 += kLanes) {
    bf16_bits* panel = p.kt + (n0 + r0) * p.qk2;  // (qk2 / 2, 16, 2)
    const int64_t keys = p.n - (n0 + r0);  // of the 16, the real ones
    for (int64_t pr = 0; pr < p.qk2 / 2; ++pr) {
      if (pr >= pairs) {
        _mm512_storeu_si512(panel + pr * 2 * kLanes, _mm512_setzero_si512());
        continue;
      }
      const int64_t d = 2 * pr;  // channel of the even lanes
      const __m512i index = _mm512_add_epi32(key_rows, _mm512_set1_epi32(static_cast<int>(r0 * p.out_pad + p.qk + d)));
      double bias_pair;
      std::memcpy(&bias_pair, p.bias + p.qk + d, sizeof bias_pair);
      const __m512 bias = _mm512_castpd_ps(_mm512_set1_pd(bias_pair));
      // lanes 2 j and 2 j + 1: channels d and d + 1 of key j (keys 0-7 low, 8-15 high)
      const __mmask16 real = p.qk - d >= 2 ? 0xffff : p.qk - d == 1 ? 0x5555 : 0;
      const __mmask16 shift = d == p.qk ? 0x5555 : d + 1 == p.qk ? 0xaaaa : 0;
      const __m512 one = _mm512_set1_ps(1.0f);
      auto half = [&](int64_t h) {
        const __mmask16 live = real & first_lanes(2 * (keys - 8 * h));
        const __m512 k = _mm512_castsi512_ps(_mm512_i32gather_epi64(
            _mm512_extracti64x4_epi64(index, h), c, 4));
        return _mm512_mask_blend_ps(shift, _mm512_maskz_add_ps(live, k, bias), one);
      };
      const __m512 low = half(0), high = half(1);
      _mm512_storeu_si512(panel + pr * 2 * kLanes, (__m512i)_mm512_cvtne2ps_pbh(high, low));
    }
  }
  // Values: in steps of 32 keys (v_pad / 16 panels of (16 key pairs, 16, 2)),
  // channels past v_channels and padded keys 0.
  const int64_t panels = p.v_pad / kLanes;
  for (int64_t r = 0; r < kOperandRows; r += 2) {
    const int64_t j = n0 + r;  // an even key
    bf16_bits* step = p.v + j / kFusedStep * kFusedStep * p.v_pad + j % kFusedStep / 2 * 2 * kLanes;
    for (int64_t pn = 0; pn < panels; ++pn) {
      const int64_t ch = pn * kLanes;
      const __mmask16 live = first_lanes(p.v_channels - ch);
      const float* col = c + r * p.out_pad + 2 * p.qk + ch;
      const __m512 bias = _mm512_maskz_loadu_ps(live, p.bias + 2 * p.qk + ch);
      const __m512 even = _mm512_maskz_add_ps(j < p.n ? live : 0, _mm512_maskz_loadu_ps(live, col), bias);
      const __m512 odd =
          _mm512_maskz_add_ps(j + 1 < p.n ? live : 0, _mm512_maskz_loadu_ps(live, col + p.out_pad), bias);
      _mm512_storeu_si512(step + pn * kFusedStep * kLanes, pair_row(even, odd));
    }
  }
}

// The fused forward for values of NV tiles, in blocks of FBM queries.
template <int64_t FBM, int64_t CHUNK>
void fused_forward_blocks(const Bf16ForwardProblem& p, int64_t block, float* scratch) {
  switch ((p.v_channels + kLanes - 1) / kLanes) {
    case 1: return fused_forward_block<1, FBM, CHUNK>(p, block, scratch);
    case 2: return fused_forward_block<2, FBM, CHUNK>(p, block, scratch);
    case 3: return fused_forward_block<3, FBM, CHUNK>(p, block, scratch);
    default: return fused_forward_block<4, FBM, CHUNK>(p, block, scratch);
  }
}

// The fused forward where it applies (fused_forward), in blocks of FUSED_BM
// queries, or twice that on large maps (amx_forward_layout), the generic one
// otherwise, in blocks of BM; the fused one's keys in chunks of CHUNK, each
// chunk against every strip of the block in turn, so that the chunk's keys
// and values, read from L3 by the first strip, are read from L1 or L2 by the
// block's other strips.
template <int64_t BM, int64_t BN, int64_t FUSED_BM, int64_t CHUNK>
void amx_forward_block(const Bf16ForwardProblem& p, int64_t block, float* scratch) {
  if (!fused_forward(p.qk, p.v_channels)) return forward_block_bf16<TileDot, BM, BN>(p, block, scratch);
  if (p.block_m == 2 * FUSED_BM) return fused_forward_blocks<2 * FUSED_BM, CHUNK>(p, block, scratch);
  return fused_forward_blocks<FUSED_BM, CHUNK>(p, block, scratch);
}

template <int64_t BM, int64_t BN, int64_t FUSED_BM>
int64_t amx_forward_scratch(int64_t v_pad) {
  const int64_t fused = fused_forward_scratch<2 * FUSED_BM>(v_pad), tiled = forward_scratch_bf16<BM, BN>(v_pad);
  return fused > tiled ? fused : tiled;
}

// Blocks of 2 FUSED_BM queries where every thread still gets this many:
// the keys and values then stream from L3 half as often (1 thread, 128x128,
// the kernel alone 1.6 % faster), and a small map still splits across threads.
constexpr int64_t kLargeBlocksPerThread = 4;

template <int64_t BM, int64_t FUSED_BM>
Bf16ForwardLayout amx_forward_layout(int64_t qk, int64_t v_channels, int64_t n, int64_t threads) {
  if (!fused_forward(qk, v_channels)) return plain_layout<BM>(qk, v_channels, n, threads);
  const bool large = n >= kLargeBlocksPerThread * threads * 2 * FUSED_BM;
  return {large ? 2 * FUSED_BM : FUSED_BM, kFusedStep, true, true};
}

template <int64_t BM, int64_t BN, int64_t FUSED_BM, int64_t CHUNK>
constexpr Bf16KernelTable with_fused_forward(Bf16KernelTable table) {
  static_assert(FUSED_BM % BM == 0 && FUSED_BM % kFusedRows == 0, "fused blocks of whole blocks and strips");
  static_assert(FUSED_BM % kOperandRows == 0 && BN % kOperandRows == 0, "operands in whole blocks");
  table.forward_scratch = &amx_forward_scratch<BM, BN, FUSED_BM>;
  table.forward_layout = &amx_forward_layout<BM, FUSED_BM>;
  table.forward_block = &amx_forward_block<BM, BN, FUSED_BM, CHUNK>;
  table.operands_rows = kOperandRows;
  table.operands_scratch = &operands_scratch;
  table.forward_operands = &forward_operands;
  return table;
}

}  // namespace
}  // namespace sacolor::cpu::amx

namespace sacolor::cpu {
namespace {
// Queries in blocks of 128 (4 depth steps of 32, 4 row pairs of tiles), keys
// in blocks of 256: the P V product then runs 8 depth steps per load and
// store of its C tiles, and each row's max is reduced half as often
// (1 thread, 128x128, C = 64: forward 0.138 -> 0.125 s, forward + backward
// 0.387 -> 0.370 s; 512 keys, or 256 queries, were slower forward + backward).
// The fused forward in blocks of 512 queries, so each chunk's values come
// from L3 once for 32 strips, not 8 (1 thread, 128x128, the kernel alone:
// 0.061 -> 0.055 s; chunks of 128 keys 4 % slower), and of 1024 where each
// thread still gets four blocks (amx_forward_layout).
constexpr Bf16KernelTable kAmx =
    amx::with_fused_forward<128, 256, 512, 256>(amx::make_bf16_table<amx::TileDot, 128, 256>("amx"));
}  // namespace
const Bf16KernelTable* amx_kernels() { return &kAmx; }
}  // namespace sacolor::cpu

#else

namespace sacolor::cpu {
const Bf16KernelTable* amx_kernels() { return nullptr; }
}  // namespace sacolor::cpu

#endif
