// The CPU implementation of sacolor_C::self_attention_fwd and
// sacolor_C::attention_bwd (schemas in csrc/ops.cpp). The forward is the whole
// op: the 1x1 projections, pooling and epilogue run as ATen ops on (B,
// positions, channels) tensors around the attention core. The backward is the
// attention core only (dq, dk, dv from dO): the gradients of the projections,
// the pool, Wo and gamma are sacolor/backends/chain.py's, shared by every fused
// backend. The core runs in the tile kernels of tiles_*.cpp, chosen at run time
// for the CPU, with OpenMP over (batch, block) through at::parallel_for.
// Nothing N x M is ever allocated: extra memory is O(B * N * (qk + v)) plus
// O(threads * N * qk) for the dq parts.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "isa.h"
#include "tiles.h"

namespace sacolor::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

constexpr double kLog2e = 1.442695040888963407359924681001892137;

// ---- which kernels -------------------------------------------------------

// The path this call takes (isa.h: SACOLOR_CPU_ISA, else the best this CPU
// runs), with a bad SACOLOR_CPU_ISA reported as a ValueError.
Isa current_isa() {
  try {
    return selected_isa();
  } catch (const std::invalid_argument& err) {
    TORCH_CHECK_VALUE(false, err.what());
  }
}

// The float32 tiles of a path: avx512bf16 runs float32 on the AVX-512F tiles.
const KernelTable<float>& float_kernels(Isa isa) {
  const KernelTable<float>* table = isa == Isa::generic ? generic_f32()
                                    : isa == Isa::avx2  ? avx2_f32()
                                                        : avx512_f32();
  TORCH_CHECK(table != nullptr, "sacolor cpu kernel: this build has no ", isa_name(isa),
              " kernels (the compiler lacked them); set SACOLOR_CPU_ISA to a lower path");
  return *table;
}

// The bfloat16 tiles, when this call's path has them.
const Bf16KernelTable* bf16_kernels() {
  switch (current_isa()) {
    case Isa::avx512bf16: return avx512bf16_kernels();
    case Isa::amx: return amx_kernels();
    default: return nullptr;
  }
}

template <typename T>
const KernelTable<T>& kernels();
template <>
const KernelTable<float>& kernels<float>() { return float_kernels(current_isa()); }
template <>
const KernelTable<double>& kernels<double>() { return *generic_f64(); }

// ---- inputs --------------------------------------------------------------

void check_same_dtype(const Tensor& t, const char* name, const Tensor& x) {
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "sacolor cpu kernel: ", name, " has dtype ",
              t.scalar_type(), " but x has ", x.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "sacolor cpu kernel: ", name, " must be contiguous");
}

void check_inputs(const Tensor& x, const Tensor& wq, const OptTensor& bq, const Tensor& wk,
                  const OptTensor& bk, const Tensor& wv, const OptTensor& bv, const OptTensor& wo,
                  const OptTensor& bo, const Tensor& gamma, int64_t pool) {
  TORCH_CHECK(x.dim() == 4, "sacolor cpu kernel: x must be (B, C, H, W); got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble ||
                  x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf,
              "sacolor cpu kernel: x has dtype ", x.scalar_type(),
              "; supported: float32, float64, bfloat16, float16");
  TORCH_CHECK(x.is_contiguous(), "sacolor cpu kernel: x must be contiguous");
  TORCH_CHECK(pool == 1 || pool == 2, "sacolor cpu kernel: pool must be 1 or 2; got ", pool);
  TORCH_CHECK(x.size(2) % pool == 0 && x.size(3) % pool == 0,
              "sacolor cpu kernel: x's H and W must be divisible by pool=", pool, "; got ",
              x.sizes());
  check_same_dtype(wq, "wq", x);
  check_same_dtype(wk, "wk", x);
  check_same_dtype(wv, "wv", x);
  check_same_dtype(gamma, "gamma", x);
  TORCH_CHECK(gamma.numel() == 1, "sacolor cpu kernel: gamma must have one element");
  TORCH_CHECK(wq.dim() == 2 && wk.dim() == 2 && wv.dim() == 2 && wq.size(1) == x.size(1) &&
                  wk.size(1) == x.size(1) && wv.size(1) == x.size(1),
              "sacolor cpu kernel: wq, wk and wv must be (out, C) with C = ", x.size(1));
  TORCH_CHECK(wk.size(0) == wq.size(0), "sacolor cpu kernel: wk has ", wk.size(0),
              " rows but wq has ", wq.size(0), "; queries and keys need the same width");
  const std::pair<const OptTensor*, const char*> optional[] = {
      {&bq, "bq"}, {&bk, "bk"}, {&bv, "bv"}, {&wo, "wo"}, {&bo, "bo"}};
  for (const auto& [t, name] : optional)
    if (t->has_value()) check_same_dtype(**t, name, x);
}

// The inputs, the parameters in the accumulation dtype (float64 stays;
// float32, bfloat16 and float16 accumulate in float32), x in its own (the
// bfloat16 tiles' own projection reads it so; the others widen it).
struct Operands {
  Tensor x;           // (B, C, H, W), contiguous
  Tensor wq, wk, wv;  // (qk, C), (qk, C), (v, C)
  OptTensor bq, bk, bv, wo, bo;
  Tensor gamma;  // 0-dim
  int64_t pool;

  int64_t batch() const { return x.size(0); }
  int64_t channels() const { return x.size(1); }
  int64_t queries() const { return x.size(2) * x.size(3); }
  int64_t keys() const { return queries() / (pool * pool); }
  at::TensorOptions acc_options() const { return wq.options(); }
  Tensor x_rows() const { return x.view({batch(), channels(), queries()}).to(wq.scalar_type()); }  // (B, C, N)
};

Operands cast_operands(const Tensor& x, const Tensor& wq, const OptTensor& bq, const Tensor& wk,
                       const OptTensor& bk, const Tensor& wv, const OptTensor& bv,
                       const OptTensor& wo, const OptTensor& bo, const Tensor& gamma,
                       int64_t pool) {
  const auto acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto cast = [acc](const Tensor& t) { return t.to(acc); };
  auto cast_opt = [&](const OptTensor& t) -> OptTensor {
    return t.has_value() ? OptTensor(cast(*t)) : std::nullopt;
  };
  return {x,            cast(wq),     cast(wk),     cast(wv),     cast_opt(bq),
          cast_opt(bk), cast_opt(bv), cast_opt(wo), cast_opt(bo), cast(gamma).reshape({}),
          pool};
}

// w (out, C) applied to src (B, C, L): (B, out, L).
Tensor project(const Tensor& w, const OptTensor& b, const Tensor& src) {
  Tensor out = at::matmul(w, src);
  return b.has_value() ? out.add_(b->unsqueeze(-1)) : out;
}

// q, k and v come from one GEMM over x: (B, qk + qk + v, N); keys and values
// are then max-pooled together (pooling is per channel; BigGAN order, see
// sacolor/inputs.py).
struct Projections {
  Tensor q;  // (B, qk, N)
  Tensor k;  // (B, qk, M)
  Tensor v;  // (B, v, M)
};

// [wq; wk; wv] (2 qk + v, C), and the biases stacked alike (zeros where absent).
std::pair<Tensor, OptTensor> stacked_weights(const Operands& op) {
  const Tensor w = at::cat({op.wq, op.wk, op.wv});
  if (!op.bq.has_value() && !op.bk.has_value() && !op.bv.has_value()) return {w, std::nullopt};
  auto or_zeros = [&](const OptTensor& b, const Tensor& weight) {
    return b.has_value() ? *b : at::zeros({weight.size(0)}, weight.options());
  };
  return {w, at::cat({or_zeros(op.bq, op.wq), or_zeros(op.bk, op.wk), or_zeros(op.bv, op.wv)})};
}

// Max over each p x p window of t (B, C, H, W) as the elementwise maximum of
// its p * p strided views: 5-9x faster than at::max_pool2d on CPU here (e.g.
// 0.3 ms against 2 ms for 40 x 128 x 128), which shows on small maps. NaN
// propagates, as in max_pool2d.
Tensor max_pool_values(const Tensor& t, int64_t p) {
  Tensor pooled;
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j < p; ++j) {
      const Tensor view = t.slice(2, i, t.size(2), p).slice(3, j, t.size(3), p);
      pooled = pooled.defined() ? at::maximum(pooled, view) : view;
    }
  return pooled;
}

Projections project_all(const Operands& op) {
  const int64_t qk = op.wq.size(0), v = op.wv.size(0);
  const auto [w, b] = stacked_weights(op);
  const Tensor all = project(w, b, op.x_rows());
  const Tensor q = all.narrow(1, 0, qk), kv = all.narrow(1, qk, qk + v);
  if (op.pool == 1) return {q, kv.narrow(1, 0, qk), kv.narrow(1, qk, v)};
  const Tensor full = kv.reshape({op.batch(), qk + v, op.x.size(2), op.x.size(3)});
  const Tensor pooled = max_pool_values(full, op.pool).reshape({op.batch(), qk + v, op.keys()});
  return {q, pooled.narrow(1, 0, qk), pooled.narrow(1, qk, v)};
}

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Writes t (B, depth, cols), of any strides, padded with `fill` to (B,
// depth_pad, cols_pad) into `out` in panels: (B, cols_pad / width, depth_pad,
// width), or with `pairs`, (B, cols_pad / width, depth_pad / 2, width, 2) (the
// two depth neighbours of a column side by side). One pass, in blocks of 64 x
// 64, so that a transposed view is read a whole cache line at a time: ATen's
// copy of (N, C) rows into (C, N) order, or its add of such a view to a
// contiguous tensor, took 9 ms at N = 16 384, C = 64 (this: under 1 ms).
// With `group` (a divisor of depth_pad, even with pairs), the panels of each
// `group` depth rows side by side: (B, depth_pad / group, cols_pad / width,
// group, width) (the values of Bf16ForwardLayout::value_step).
template <typename S, typename D>
void pack_panels(const Tensor& t, int64_t depth_pad, int64_t cols_pad, int64_t width, bool pairs,
                 double fill, Tensor& out, int64_t group = 0) {
  constexpr int64_t kBlock = 64;
  const int64_t batch = t.size(0), depth = t.size(1), cols = t.size(2);
  const int64_t sb = t.stride(0), sd = t.stride(1), sc = t.stride(2);
  const int64_t panel_count = cols_pad / width, depth_blocks = (depth_pad + kBlock - 1) / kBlock;
  const int64_t lane_blocks = (width + kBlock - 1) / kBlock;
  const int64_t step = pairs ? 2 : 1;
  if (group == 0) group = depth_pad;
  const D pad = static_cast<D>(fill);
  const S* src = t.data_ptr<S>();
  D* dst = out.data_ptr<D>();
  const int64_t tasks = batch * panel_count * depth_blocks * lane_blocks;
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t l0 = task % lane_blocks * kBlock, l1 = std::min(l0 + kBlock, width);
      const int64_t d0 = task / lane_blocks % depth_blocks * kBlock;
      const int64_t d1 = std::min(d0 + kBlock, depth_pad);
      const int64_t p = task / (lane_blocks * depth_blocks) % panel_count;
      const int64_t b = task / (lane_blocks * depth_blocks * panel_count);
      D* matrix = dst + b * depth_pad * cols_pad;
      const int64_t lanes = std::clamp<int64_t>(cols - p * width, l0, l1);  // lanes of real columns
      for (int64_t d = d0; d < d1; ++d) {
        D* panel = matrix + d / group * group * cols_pad + p * group * width;
        const int64_t e = d % group;  // the row in its group's panel
        D* row = pairs ? panel + e / 2 * 2 * width + e % 2 : panel + e * width;
        const int64_t valid = d < depth ? lanes : l0;
        const S* in = src + b * sb + d * sd + p * width * sc;
        for (int64_t l = l0; l < valid; ++l) row[l * step] = static_cast<D>(in[l * sc]);
        for (int64_t l = valid; l < l1; ++l) row[l * step] = pad;
      }
    }
  });
}

// The right-hand operand layout of the tile kernels (tiles.h): t (B, depth,
// cols) padded to (B, depth_pad, cols_pad), stored as (B, cols_pad / width,
// depth_pad, width).
Tensor panels(const Tensor& t, int64_t depth_pad, int64_t cols_pad, int64_t width,
              double fill = 0.0) {
  Tensor out = at::empty({t.size(0), cols_pad / width, depth_pad, width}, t.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, t.scalar_type(), "panels", [&] {
    pack_panels<scalar_t, scalar_t>(t, depth_pad, cols_pad, width, false, fill, out);
  });
  return out;
}

// t (B, r, c) zero-padded (or `fill`-padded) to (B, rows, cols), contiguous:
// one panel as wide as the matrix.
Tensor padded(const Tensor& t, int64_t rows, int64_t cols, double fill = 0.0) {
  return panels(t, rows, cols, cols, fill).view({t.size(0), rows, cols});
}


// The right-hand operand layout of the bfloat16 tiles (tiles.h, "pair
// panels"): t (B, depth, cols) rounded to bfloat16 (to nearest even, as
// vcvtneps2bf16 and ATen's .to), zero-padded to (B, depth_pad, cols_pad), stored as (B,
// cols_pad / width, depth_pad / 2, width, 2); with `group`, in groups of that
// many depth rows (pack_panels).
Tensor pair_panels(const Tensor& t, int64_t depth_pad, int64_t cols_pad, int64_t width,
                   int64_t group = 0) {
  Tensor out = at::empty({t.size(0), cols_pad / width, depth_pad / 2, width, 2},
                         t.options().dtype(at::kBFloat16));
  pack_panels<float, at::BFloat16>(t.to(at::kFloat), depth_pad, cols_pad, width, true, 0.0, out, group);
  return out;
}

const bf16_bits* bf16_data(const Tensor& t) {
  return reinterpret_cast<const bf16_bits*>(t.data_ptr<at::BFloat16>());
}

// The first rows x cols of each (B, rows_pad, cols_pad) matrix, contiguous.
Tensor crop(const Tensor& t, int64_t rows, int64_t cols) {
  return t.narrow(1, 0, rows).narrow(2, 0, cols).contiguous();
}

// Padded sizes shared by the forward and the backward of one call.
struct Sizes {
  int64_t batch, n, m, n_pad, m_pad, qk, qk_pad, v, v_pad;

  template <typename T>
  static Sizes of(int64_t batch, int64_t n, int64_t m, int64_t qk, int64_t v,
                  const KernelTable<T>& kt) {
    return {batch, n, m, round_up(n, kt.block_m), round_up(m, kt.block_n),
            qk, round_up(qk, kt.width), v, round_up(v, kt.width)};
  }
};

// Queries per forward task, a multiple of `block`. Each task streams the keys
// and values past its queries once; where they no longer fit in L2, four
// blocks per task make it a quarter as often: from 256 blocks up (37 MB of keys
// and values at 256x512, C = 64; 1 thread, AVX-512: 21.1 s -> 18.6 s). Smaller
// maps keep one block per task, for load balance across threads.
constexpr int64_t kForwardLargeMapBlocks = 256;
// Key blocks per backward call (sum_over_keys; a part smaller than that is one
// call). Each call streams the queries' side (queries, dO, dO^T, dq: 10 MB at
// 128x128, C = 64) past its keys once, and each key costs about 640 bytes of L2
// (k, kc, v, dk, dv), so eight blocks (768 keys on AVX2, 896 on AVX-512: about
// 0.5 MB) stream it an eighth as often and stay in L2 (1 thread, 128x128, the
// backward op alone, all three interleaved, under load: four blocks 0.933 and
// 0.564 s, eight 0.900 and 0.543 s, sixteen 0.900 and 0.546 s, AVX2 and
// AVX-512; one block was 5 % slower than four). It no longer sets the load
// balance, which the parts do.
constexpr int64_t kBackwardTaskBlocks = 8;
int64_t rows_per_task(int64_t padded, int64_t block) {
  return block * (padded >= kForwardLargeMapBlocks * block ? 4 : 1);
}

// Runs task(i, scratch) for every i in [0, count) on torch's threads (so
// torch.set_num_threads applies), each thread taking the next index not yet
// taken. On a shared machine a thread the OS delays holds up only the task it
// is on, not a fixed half of the work. `scratch` is per thread, on a cache
// line boundary: the kernels read and write its rows a whole vector or AMX
// tile row at a time, and malloc's 16-byte alignment split each of those
// across two lines (1 thread, 128x128, C = 64: the bf16 AMX forward kernel
// 30 % slower).
template <typename T, typename Task>
void for_each_task(int64_t count, int64_t scratch_size, const Task& task) {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  constexpr int64_t kLine = 64;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), count));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    const std::unique_ptr<T, Free> scratch(static_cast<T*>(
        std::aligned_alloc(kLine, round_up(std::max<int64_t>(scratch_size, 1) * sizeof(T), kLine))));
    TORCH_CHECK(scratch != nullptr, "sacolor cpu kernel: out of memory for ", scratch_size,
                " scratch elements");
    for (int64_t i = next++; i < count; i = next++) task(i, scratch.get());
  });
}

// Runs keys(b, first_key, count, dq_b, scratch) over every batch element's
// keys [0, m_pad) in parallel and returns dq (B, dq_shape...), the sum of what
// the calls add into dq_b (the dq of batch element b). dq is a sum over keys,
// so each part (four per thread, taken in turn by whichever thread is free)
// sums into its own buffer and the parts are added in a fixed order
// afterwards: no atomics, and the same bits on every run with the same thread
// count. The parts hold the same number of the m valid keys to within one
// `unit` (a multiple of the kernels' key granularity), whatever `task_keys`
// (the keys a call should take, for cache reuse; each part runs its keys in
// calls of about that many): parts of whole tasks were uneven (43 tasks of 384
// keys in 8 parts of 5 or 6, AVX2 at 128x128, C = 64: the last thread ran 6 %
// of the backward alone). The padded keys past m go to the last call of each
// batch element. Extra memory: O((B + 4 * threads) * dq_shape).
template <typename T, typename Keys>
Tensor sum_over_keys(int64_t batch, int64_t m, int64_t m_pad, int64_t unit, int64_t task_keys,
                     std::vector<int64_t> dq_shape, const at::TensorOptions& options,
                     int64_t scratch, const Keys& keys) {
  const int64_t units = (m + unit - 1) / unit;  // per batch element
  const int64_t total = batch * units;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(4 * at::get_num_threads(), total));
  auto first_unit = [&](int64_t part) { return part * total / parts; };
  auto first_batch = [&](int64_t part) { return first_unit(part) / units; };
  auto batches = [&](int64_t part) {
    return (first_unit(part + 1) - 1) / units - first_batch(part) + 1;
  };
  auto shape = [&](int64_t leading) {
    std::vector<int64_t> full{leading};
    full.insert(full.end(), dq_shape.begin(), dq_shape.end());
    return full;
  };
  int64_t per_batch = 1;
  for (int64_t d : dq_shape) per_batch *= d;
  std::vector<Tensor> dq_parts;
  for (int64_t part = 0; part < parts; ++part) dq_parts.push_back(at::zeros(shape(batches(part)), options));
  for_each_task<T>(parts, scratch, [&](int64_t part, T* work) {
    T* dq_part = dq_parts[part].template data_ptr<T>();
    for (int64_t u = first_unit(part); u < first_unit(part + 1);) {
      const int64_t b = u / units;
      const int64_t lo = u - b * units;
      const int64_t hi = std::min(first_unit(part + 1), (b + 1) * units) - b * units;
      const int64_t end = hi == units ? m_pad : hi * unit;
      const int64_t calls = std::max<int64_t>(1, ((hi - lo) * unit + task_keys / 2) / task_keys);
      for (int64_t call = 0; call < calls; ++call) {
        const int64_t first = (lo + call * (hi - lo) / calls) * unit;
        const int64_t last = call + 1 < calls ? (lo + (call + 1) * (hi - lo) / calls) * unit : end;
        keys(b, first, last - first, dq_part + (b - first_batch(part)) * per_batch, work);
      }
      u = b * units + hi;
    }
  });
  Tensor dq = at::zeros(shape(batch), options);
  for (int64_t part = 0; part < parts; ++part)
    dq.narrow(0, first_batch(part), batches(part)).add_(dq_parts[part]);
  return dq;
}

// ---- forward -------------------------------------------------------------

// o (B, N, v), lse (B, N, base 2) and the queries the scores used, q (B, N, qk)
// times scale * log2(e): the backward reuses exactly these.
template <typename T>
std::tuple<Tensor, Tensor, Tensor> attention_forward(const Operands& op, double scale) {
  const KernelTable<T>& kt = kernels<T>();
  const Sizes s = Sizes::of(op.batch(), op.queries(), op.keys(), op.wq.size(0), op.wv.size(0), kt);
  const Projections proj = project_all(op);
  const Tensor q_scaled = (proj.q * (scale * kLog2e)).transpose(1, 2);
  const Tensor q = padded(q_scaled, s.n_pad, s.qk_pad);
  const Tensor k_t = panels(proj.k, s.qk, s.m_pad, kt.width);
  const Tensor v = panels(proj.v.transpose(1, 2), s.m_pad, s.v_pad, kt.width);
  Tensor o = at::empty({s.batch, s.n, s.v}, op.acc_options());
  Tensor lse = at::empty({s.batch, s.n}, op.acc_options());

  const int64_t task_rows = rows_per_task(s.n_pad, kt.block_m);
  const int64_t blocks = (s.n_pad + task_rows - 1) / task_rows;
  const T* q_ptr = q.data_ptr<T>();
  const T* k_ptr = k_t.data_ptr<T>();
  const T* v_ptr = v.data_ptr<T>();
  T* o_ptr = o.data_ptr<T>();
  T* lse_ptr = lse.data_ptr<T>();
  const int64_t scratch = kt.forward_scratch(task_rows, s.v_pad);
  for_each_task<T>(s.batch * blocks, scratch, [&](int64_t task, T* work) {
    const int64_t b = task / blocks;
    const ForwardProblem<T> p{q_ptr + b * s.n_pad * s.qk_pad,
                              k_ptr + b * s.qk * s.m_pad,
                              v_ptr + b * s.m_pad * s.v_pad,
                              o_ptr + b * s.n * s.v,
                              lse_ptr + b * s.n,
                              s.n, s.m, s.n_pad, s.m_pad, s.qk, s.qk_pad, s.v, s.v_pad,
                              task_rows};
    kt.forward_block(p, task % blocks, work);
  });
  return {o, lse, q_scaled.contiguous()};
}

// The padded sizes of one bfloat16 forward.
struct Bf16Sizes {
  int64_t batch, n, m, n_pad, m_pad, qk, qk2, v, v_pad;
};

// The bfloat16 forward's operands in its kernels' layouts (Bf16ForwardProblem),
// and the queries unrounded (float32, (B, N, qk)) as the forward returns them.
struct Bf16Operands {
  Tensor q, k_t, values, q_scaled;
};

// The operands from ATen's float32 projection (project_all), rounded and
// packed here.
Bf16Operands packed_operands(const Operands& op, double scale, const Bf16KernelTable& kt,
                             const Bf16ForwardLayout& layout, const Bf16Sizes& s) {
  const Projections proj = project_all(op);
  const Tensor q_scaled = (proj.q * (scale * kLog2e)).transpose(1, 2);
  const Tensor q = padded(q_scaled.to(at::kBFloat16), s.n_pad, s.qk2);
  const Tensor k_t = pair_panels(proj.k, s.qk2, s.m_pad, kt.width);
  // (B, m_pad / width, qk2 / 2, width, 2): row qk is pair row qk / 2, element qk % 2
  if (layout.shift_row) k_t.select(2, s.qk / 2).select(3, s.qk % 2).fill_(1);
  // tiles.h: the values in pair panels, or in steps (a kernel that then sums its rows itself)
  const int64_t step = layout.value_step;
  const Tensor values = pair_panels(proj.v.transpose(1, 2), s.m_pad, s.v_pad, kt.width, step);
  if (step == 0) {
    // Column v of the m keys, (B, m_pad / 2, 2) in the pair panels: ones (an
    // at::cat of the transposed values and a ones column took 4 ms at 128x128).
    const Tensor ones_column = values.select(1, s.v / kt.width).select(2, s.v % kt.width);
    ones_column.narrow(1, 0, s.m / 2).fill_(1);
    if (s.m % 2 == 1) ones_column.select(1, s.m / 2).select(1, 0).fill_(1);
  }
  return {q, k_t, values, q_scaled.contiguous()};
}

// A bfloat16 buffer of `shape` that this thread reuses from call to call
// (`slot` tells the buffers of one call apart), grown to the largest seen:
// fresh ones of 4.6 MB a call (128x128, C = 64) set glibc trimming its heap
// and faulting every page in again (2 200 page faults a forward, about 5 % of
// it at 1 thread). Only for buffers that do not leave the call.
Tensor reused_bf16(int slot, at::IntArrayRef shape) {
  struct Buffer {
    std::unique_ptr<void, decltype(&std::free)> data{nullptr, &std::free};
    int64_t bytes = 0;
  };
  thread_local std::array<Buffer, 3> buffers;
  int64_t bytes = sizeof(at::BFloat16);
  for (int64_t d : shape) bytes *= d;
  Buffer& buffer = buffers.at(slot);
  if (buffer.bytes < bytes) {
    buffer.data.reset();  // the old one freed before the new one is taken
    buffer.bytes = 0;
    buffer.data.reset(std::aligned_alloc(64, round_up(bytes, 64)));
    TORCH_CHECK(buffer.data != nullptr, "sacolor cpu kernel: out of memory for ", bytes, " bytes of operands");
    buffer.bytes = bytes;
  }
  return at::from_blob(buffer.data.get(), shape, at::TensorOptions().dtype(at::kBFloat16));
}

// The operands from the table's own projection (forward_operands), straight
// from x in bfloat16: ATen's float32 GEMM on x widened, and the packing
// passes over its result, took 7 % of the forward (1 thread, 128x128, C = 64).
Bf16Operands tile_operands(const Operands& op, double scale, const Bf16KernelTable& kt, const Bf16Sizes& s) {
  const int64_t channels = op.channels(), c2 = round_up(channels, kt.depth_multiple);
  const int64_t out = 2 * s.qk + s.v, out_pad = round_up(out, kt.width);
  const auto [w, b] = stacked_weights(op);  // bfloat16 values: exact in bfloat16 again
  const Tensor w_t = pair_panels(w.t().unsqueeze(0), c2, out_pad, kt.width);
  Tensor bias = at::zeros({out_pad}, op.acc_options());
  if (b.has_value()) bias.narrow(0, 0, out).copy_(*b);
  Tensor q = reused_bf16(0, {s.batch, s.n_pad, s.qk2});
  Tensor k_t = reused_bf16(1, {s.batch, s.m_pad / kt.width, s.qk2 / 2, kt.width, 2});
  Tensor values = reused_bf16(2, {s.batch, s.m_pad, s.v_pad});  // in steps
  Tensor q_scaled = at::empty({s.batch, s.n, s.qk}, op.acc_options());
  const bf16_bits *x_ptr = bf16_data(op.x), *w_ptr = bf16_data(w_t);
  const float* bias_ptr = bias.data_ptr<float>();
  float* q_scaled_ptr = q_scaled.data_ptr<float>();
  bf16_bits* q_ptr = reinterpret_cast<bf16_bits*>(q.data_ptr<at::BFloat16>());
  bf16_bits* k_ptr = reinterpret_cast<bf16_bits*>(k_t.data_ptr<at::BFloat16>());
  bf16_bits* v_ptr = reinterpret_cast<bf16_bits*>(values.data_ptr<at::BFloat16>());
  const float q_factor = static_cast<float>(scale * kLog2e);  // as ATen's multiply by the double
  const int64_t blocks = s.n_pad / kt.operands_rows;
  for_each_task<float>(s.batch * blocks, kt.operands_scratch(c2, out_pad), [&](int64_t task, float* work) {
    const int64_t b = task / blocks;
    const Bf16OperandsProblem p{x_ptr + b * channels * s.n, w_ptr, bias_ptr, q_factor,
                                q_scaled_ptr + b * s.n * s.qk, q_ptr + b * s.n_pad * s.qk2,
                                k_ptr + b * s.qk2 * s.m_pad, v_ptr + b * s.m_pad * s.v_pad,
                                channels, c2, s.n, s.n_pad, s.m_pad, s.qk, s.qk2, s.v, s.v_pad, out_pad};
    kt.forward_operands(p, task % blocks, work);
  });
  return {q, k_t, values, q_scaled};
}

// The same on the bfloat16 tiles: q (times scale * log2 e), k and v rounded to
// bfloat16 once, products accumulated in float32. Returns the queries unrounded
// (float32), like the float32 path: the backward rounds them again bit for bit.
// With y defined (no output projection, v = C), the kernel writes y = gamma
// o^T + x into it block by block, while each block's o is in cache (the
// residual apart read all of o back: 1.5 % of the forward at 1 thread, 128x128).
std::tuple<Tensor, Tensor, Tensor> attention_forward_bf16(const Operands& op, double scale,
                                                          const Bf16KernelTable& kt, const Tensor& y) {
  const int64_t batch = op.batch(), n = op.queries(), m = op.keys();
  const int64_t qk = op.wq.size(0), v = op.wv.size(0);
  const Bf16ForwardLayout layout = kt.forward_layout(qk, v, n, at::get_num_threads());
  // One more value column, of ones: the kernel's P V then sums each row of P too.
  const Bf16Sizes s{batch, n, m, round_up(n, layout.block_m), round_up(m, kt.block_n),
                    qk, round_up(qk, kt.depth_multiple), v, round_up(v + 1, kt.width)};
  const Bf16Operands operands = layout.operands && op.pool == 1 ? tile_operands(op, scale, kt, s)
                                                                : packed_operands(op, scale, kt, layout, s);
  Tensor o = at::empty({batch, n, v}, op.acc_options());
  Tensor lse = at::empty({batch, n}, op.acc_options());

  const int64_t blocks = s.n_pad / layout.block_m;
  const bf16_bits *q_ptr = bf16_data(operands.q), *k_ptr = bf16_data(operands.k_t);
  const bf16_bits* v_ptr = bf16_data(operands.values);
  float *o_ptr = o.data_ptr<float>(), *lse_ptr = lse.data_ptr<float>();
  const bf16_bits* x_ptr = bf16_data(op.x);
  bf16_bits* y_ptr = y.defined() ? reinterpret_cast<bf16_bits*>(y.data_ptr<at::BFloat16>()) : nullptr;
  const float gamma = op.gamma.item<float>();
  for_each_task<float>(batch * blocks, kt.forward_scratch(s.v_pad), [&](int64_t task, float* work) {
    const int64_t b = task / blocks;
    const Bf16ForwardProblem p{q_ptr + b * s.n_pad * s.qk2, k_ptr + b * s.qk2 * s.m_pad,
                               v_ptr + b * s.m_pad * s.v_pad, o_ptr + b * n * v, lse_ptr + b * n,
                               n, m, s.n_pad, s.m_pad, qk, s.qk2, v, s.v_pad, layout.block_m,
                               x_ptr + b * v * n, y_ptr == nullptr ? nullptr : y_ptr + b * v * n, gamma};
    kt.forward_block(p, task % blocks, work);
  });
  return {o, lse, operands.q_scaled};
}

// The op's output after the attention core: (Wo o + bo) (B, N, C), or o.
Tensor output_rows(const Operands& op, const Tensor& o) {
  return op.wo.has_value() ? at::linear(o, *op.wo, op.bo) : o;
}

// y = gamma * rows^T + x in x's dtype, rounded once: rows (B, N, C) contiguous
// in the accumulation type, x (B, C, ...) in its own. One pass over blocks of
// 64 queries (their rows in L1 while each channel's 64 outputs are written):
// ATen's add of a transposed view to x ran 10x slower than a transposed copy
// and the add apart, and that copy, the multiply, the add and the rounding
// copy took four passes and two float32 tensors. bfloat16 x takes the
// bfloat16 tiles' residual where this call's path has them (the same rounding,
// vectorised).
Tensor residual_output(const Tensor& rows, const Tensor& gamma, const Tensor& x) {
  constexpr int64_t kBlock = 64;
  const int64_t batch = rows.size(0), n = rows.size(1), c = rows.size(2);
  const Tensor xc = x.contiguous();
  Tensor y = at::empty_like(xc);
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const Bf16KernelTable* bf16 = x.scalar_type() == at::kBFloat16 ? bf16_kernels() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "residual_output", [&] {
    using A = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const A g = gamma.item<A>();
    const A* r = rows.data_ptr<A>();
    const scalar_t* xs = xc.data_ptr<scalar_t>();
    scalar_t* ys = y.data_ptr<scalar_t>();
    at::parallel_for(0, batch * blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / blocks, i0 = task % blocks * kBlock, i1 = std::min(i0 + kBlock, n);
        if constexpr (std::is_same_v<scalar_t, at::BFloat16>) {
          if (bf16 != nullptr) {
            bf16->residual(reinterpret_cast<const float*>(r + b * n * c), n, c, static_cast<float>(g),
                           reinterpret_cast<const bf16_bits*>(xs + b * c * n),
                           reinterpret_cast<bf16_bits*>(ys + b * c * n), i0, i1);
            continue;
          }
        }
        for (int64_t ch = 0; ch < c; ++ch) {
          const A* in = r + b * n * c + ch;
          const int64_t row = (b * c + ch) * n;
          for (int64_t i = i0; i < i1; ++i)
            ys[row + i] = static_cast<scalar_t>(in[i * c] * g + static_cast<A>(xs[row + i]));
        }
      }
    });
  });
  return y;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> self_attention_fwd(
    const Tensor& x, const Tensor& wq, const OptTensor& bq, const Tensor& wk, const OptTensor& bk,
    const Tensor& wv, const OptTensor& bv, const OptTensor& wo, const OptTensor& bo,
    const Tensor& gamma, int64_t pool, double scale) {
  // Under torch.autocast the ATen calls below would otherwise be autocast too
  // (the projections in bf16): the kernel chooses its own precisions.
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  check_inputs(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool);
  const Operands op = cast_operands(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool);
  if (const Bf16KernelTable* bf16 = x.scalar_type() == at::kBFloat16 ? bf16_kernels() : nullptr) {
    const bool in_kernel = !op.wo.has_value() && op.wv.size(0) == op.channels();
    const Tensor y = in_kernel ? at::empty_like(x) : Tensor();
    auto [o, lse, q] = attention_forward_bf16(op, scale, *bf16, y);
    return {in_kernel ? y : residual_output(output_rows(op, o), op.gamma, x), o, lse, q};
  }
  auto [o, lse, q] = x.scalar_type() == at::kDouble ? attention_forward<double>(op, scale)
                                                   : attention_forward<float>(op, scale);
  return {residual_output(output_rows(op, o), op.gamma, x), o, lse, q};
}

// ---- backward ------------------------------------------------------------

// rowsum(dO (O - mean value)) (B, cols) from their transposes in panels (B,
// cols / width, depth, width), by the kernels' row_dots (tiles.h: why).
template <typename T>
Tensor row_dots(const KernelTable<T>& kt, const Tensor& a, const Tensor& b, int64_t depth,
                int64_t cols) {
  Tensor out = at::empty({a.size(0), cols}, a.options());
  const T *a_ptr = a.data_ptr<T>(), *b_ptr = b.data_ptr<T>();
  T* out_ptr = out.data_ptr<T>();
  at::parallel_for(0, a.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      kt.row_dots(a_ptr + i * depth * cols, b_ptr + i * depth * cols, depth, cols, out_ptr + i * cols);
  });
  return out;
}

// The attention core's gradients: dq (B, N, qk) w.r.t. the unscaled queries,
// dk (B, M, qk) and dv (B, M, v), from q (B, N, qk) as the forward saved it
// (times scale * log2(e)), k, v, dO (B, N, v), o and the base-2 lse (B, N).
template <typename T>
std::tuple<Tensor, Tensor, Tensor> attention_backward(const Tensor& q_scaled, const Tensor& k_rows,
                                                      const Tensor& v_rows, const Tensor& d_o,
                                                      const Tensor& o, const Tensor& lse,
                                                      double scale) {
  const KernelTable<T>& kt = kernels<T>();
  const Sizes s = Sizes::of(q_scaled.size(0), q_scaled.size(1), k_rows.size(1), q_scaled.size(2),
                            v_rows.size(2), kt);
  const auto options = q_scaled.options();
  const int64_t w = kt.width;
  // tiles.h, backward_pairs: q and dq in the pair layout, kc doubled, dk's lanes in halves.
  const bool pairs = backward_pairs(s.qk, w);
  // (B, rows, qk) -> (B, rows_pad / 2, w)
  auto pair_layout = [&](const Tensor& t, int64_t rows_pad) {
    return padded(t, rows_pad, w / 2)
        .view({s.batch, rows_pad / 2, 2, w / 2})
        .transpose(2, 3)
        .reshape({s.batch, rows_pad / 2, w});
  };
  auto unpaired = [&](const Tensor& t, int64_t rows_pad) {
    return pairs ? t.view({s.batch, rows_pad / 2, w / 2, 2}).transpose(2, 3).reshape({s.batch, rows_pad, w / 2})
                 : t;
  };
  const Tensor q_t = panels(q_scaled.transpose(1, 2), s.qk, s.n_pad, w);
  const Tensor q = pairs ? pair_layout(q_scaled, s.n_pad) : panels(q_scaled, s.n_pad, s.qk_pad, w);
  const Tensor k = panels(k_rows.transpose(1, 2), s.qk, s.m_pad, kt.strip);
  // Each row of dS sums to 0 and each row of P to 1, so subtracting the mean
  // key from k in dq = dS k, and the mean value from v and o in
  // dS = P (dO v^T - rowsum(dO o)), changes nothing exactly but removes the
  // cancellation a common offset (a bias, or the max-pool's positive mean)
  // causes in float32.
  const Tensor k_mean = k_rows.mean(1, true), v_mean = v_rows.mean(1, true);  // (B, 1, ch)
  const Tensor k_centered = pairs ? padded((k_rows - k_mean).repeat_interleave(2, 2), s.m_pad, w)
                                  : panels(k_rows - k_mean, s.m_pad, s.qk_pad, w);
  const Tensor v = panels((v_rows - v_mean).transpose(1, 2), s.v, s.m_pad, kt.strip);
  const Tensor dout = panels(d_o, s.n_pad, s.v_pad, w);
  const Tensor dout_t = panels(d_o.transpose(1, 2), s.v, s.n_pad, w);
  // +inf log-sum-exp on padded queries gives them probability 0.
  const Tensor lse2 = padded(lse.unsqueeze(1), 1, s.n_pad, INFINITY);
  const Tensor delta = row_dots(kt, panels((o - v_mean).transpose(1, 2), s.v, s.n_pad, w),
                                dout_t, s.v, s.n_pad);
  Tensor dk = at::empty({s.batch, s.m_pad, s.qk_pad}, options);
  Tensor dv = at::empty({s.batch, s.m_pad, s.v_pad}, options);

  const T *qt_ptr = q_t.data_ptr<T>(), *q_ptr = q.data_ptr<T>(), *k_ptr = k.data_ptr<T>();
  const T *kc_ptr = k_centered.data_ptr<T>(), *v_ptr = v.data_ptr<T>();
  const T* dout_ptr = dout.data_ptr<T>();
  const T *dout_t_ptr = dout_t.data_ptr<T>(), *lse2_ptr = lse2.data_ptr<T>();
  const T* delta_ptr = delta.data_ptr<T>();
  T *dk_ptr = dk.data_ptr<T>(), *dv_ptr = dv.data_ptr<T>();
  const Tensor dq = sum_over_keys<T>(
      s.batch, s.m, s.m_pad, kt.strip, kBackwardTaskBlocks * kt.block_n,
      pairs ? std::vector<int64_t>{s.n_pad / 2, w} : std::vector<int64_t>{s.n_pad, s.qk_pad}, options,
      kt.backward_scratch(s.qk_pad, s.v_pad),
      [&](int64_t b, int64_t first_key, int64_t keys, T* dq_b, T* work) {
        const BackwardProblem<T> p{
            qt_ptr + b * s.qk * s.n_pad,
            q_ptr + b * q.stride(0),
            k_ptr + b * s.m_pad * s.qk,
            kc_ptr + b * s.m_pad * s.qk_pad,
            v_ptr + b * s.m_pad * s.v,
            dout_ptr + b * s.n_pad * s.v_pad,
            dout_t_ptr + b * s.v * s.n_pad,
            lse2_ptr + b * s.n_pad,
            delta_ptr + b * s.n_pad,
            dq_b,
            dk_ptr + b * dk.size(1) * dk.size(2),
            dv_ptr + b * s.m_pad * s.v_pad,
            s.n, s.m, s.n_pad, s.m_pad, s.qk, s.qk_pad, s.v, s.v_pad};
        kt.backward_block(p, first_key, keys, work);
      });
  // The scores were (q * scale * log2 e) . k / log2 e: d/dq carries scale, d/dk 1 / log2 e.
  const Tensor dk_rows = pairs ? dk.view({s.batch, s.m_pad, w / 2, 2}).sum(3) : dk;  // halves added
  return {crop(unpaired(dq, s.n_pad), s.n, s.qk).mul_(scale),
          crop(dk_rows, s.m, s.qk).mul_(1.0 / kLog2e), crop(dv, s.m, s.v)};
}

// The attention core's gradients on the bfloat16 tiles, from the forward's
// float32 queries (rounded again here, bit for bit), its bfloat16 keys and
// values, and float32 dO, o and lse; float32 gradients.
std::tuple<Tensor, Tensor, Tensor> attention_backward_bf16(const Tensor& q_scaled,
                                                           const Tensor& k_rows,
                                                           const Tensor& v_rows, const Tensor& d_o,
                                                           const Tensor& o, const Tensor& lse,
                                                           double scale, const Bf16KernelTable& kt) {
  const int64_t batch = q_scaled.size(0), n = q_scaled.size(1), m = k_rows.size(1);
  const int64_t qk = q_scaled.size(2), v = v_rows.size(2), w = kt.width;
  const int64_t n_pad = round_up(n, kt.block_m), m_pad = round_up(m, kt.block_n);
  const int64_t qk2 = round_up(qk, kt.depth_multiple), qk_pad = round_up(qk, w);
  const int64_t qk_rows = round_up(qk, kt.row_multiple);
  const int64_t v2 = round_up(v, kt.depth_multiple), v_pad = round_up(v, w);
  const auto options = q_scaled.options();
  const Tensor q_t = pair_panels(q_scaled.transpose(1, 2), qk2, n_pad, w);
  const Tensor q = pair_panels(q_scaled, n_pad, qk_pad, w);
  const Tensor k = padded(k_rows, m_pad, qk2);
  // Keys and values minus their mean, as in the float32 backward (there it
  // removes cancellation; here also the part of the rounding a common offset causes).
  const Tensor k32 = k_rows.to(at::kFloat), v32 = v_rows.to(at::kFloat);
  const Tensor k_mean = k32.mean(1, true), v_mean = v32.mean(1, true);
  const Tensor k_centered_t =
      padded((k32 - k_mean).transpose(1, 2).to(at::kBFloat16), qk_rows, m_pad);
  const Tensor values = padded((v32 - v_mean).to(at::kBFloat16), m_pad, v2);
  const Tensor dout = pair_panels(d_o, n_pad, v_pad, w);
  const Tensor dout_t = pair_panels(d_o.transpose(1, 2), v2, n_pad, w);
  const Tensor lse2 = padded(lse.unsqueeze(1), 1, n_pad, INFINITY);
  const Tensor delta = padded((d_o * (o - v_mean)).sum(-1).unsqueeze(1), 1, n_pad);
  Tensor dk = at::empty({batch, m_pad, qk_pad}, options);
  Tensor dv = at::empty({batch, m_pad, v_pad}, options);

  const bf16_bits *qt_ptr = bf16_data(q_t), *q_ptr = bf16_data(q), *k_ptr = bf16_data(k);
  const bf16_bits *kct_ptr = bf16_data(k_centered_t), *v_ptr = bf16_data(values);
  const bf16_bits *dout_ptr = bf16_data(dout), *dout_t_ptr = bf16_data(dout_t);
  const float *lse2_ptr = lse2.data_ptr<float>(), *delta_ptr = delta.data_ptr<float>();
  float *dk_ptr = dk.data_ptr<float>(), *dv_ptr = dv.data_ptr<float>();
  const Tensor dq_t = sum_over_keys<float>(
      batch, m, m_pad, kt.block_n, kt.block_n, {qk_rows, n_pad}, options, kt.backward_scratch(),
      [&](int64_t b, int64_t first_key, int64_t keys, float* dq_t_b, float* work) {
        const Bf16BackwardProblem p{qt_ptr + b * qk2 * n_pad,  q_ptr + b * n_pad * qk_pad,
                                    k_ptr + b * m_pad * qk2,   kct_ptr + b * qk_rows * m_pad,
                                    v_ptr + b * m_pad * v2,    dout_ptr + b * n_pad * v_pad,
                                    dout_t_ptr + b * v2 * n_pad, lse2_ptr + b * n_pad,
                                    delta_ptr + b * n_pad,     dq_t_b,
                                    dk_ptr + b * m_pad * qk_pad, dv_ptr + b * m_pad * v_pad,
                                    n, m, n_pad, m_pad, qk_rows, qk2, qk_pad, v, v2, v_pad};
        for (int64_t j = first_key; j < first_key + keys; j += kt.block_n)
          kt.backward_block(p, j / kt.block_n, work);
      });
  // As in the float32 backward: d/dq carries scale, d/dk 1 / log2 e.
  return {crop(dq_t.transpose(1, 2), n, qk).mul_(scale), crop(dk, m, qk).mul_(1.0 / kLog2e),
          crop(dv, m, v)};
}

std::tuple<Tensor, Tensor, Tensor> attention_bwd(const Tensor& q, const Tensor& k,
                                                 const Tensor& v, const Tensor& d_o,
                                                 const Tensor& o, const Tensor& lse,
                                                 double scale) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto acc = q.scalar_type();
  TORCH_CHECK(acc == at::kFloat || acc == at::kDouble,
              "sacolor cpu kernel: the attention backward runs in float32 or float64; q has ", acc);
  // bfloat16 keys and values: the forward ran the bfloat16 tiles (cpu.py's
  // keys_values says so by their dtype); they run here too where this call's
  // path has them, else the keys and values are widened for the float32 tiles.
  const bool bf16_operands = acc == at::kFloat && k.scalar_type() == at::kBFloat16 &&
                             v.scalar_type() == at::kBFloat16;
  const std::pair<const Tensor*, const char*> operands[] = {
      {&q, "q"}, {&k, "k"}, {&v, "v"}, {&d_o, "d_o"}, {&o, "o"}};
  for (const auto& [t, name] : operands)
    if (!(bf16_operands && (t == &k || t == &v)))
    TORCH_CHECK(t->dim() == 3 && t->scalar_type() == acc && t->is_contiguous(),
                "sacolor cpu kernel: ", name, " must be a contiguous 3-D ", acc, " tensor");
  TORCH_CHECK(lse.dim() == 2 && lse.scalar_type() == acc && lse.is_contiguous(),
              "sacolor cpu kernel: lse must be a contiguous (B, N) ", acc, " tensor");
  const int64_t batch = q.size(0), n = q.size(1), m = k.size(1);
  TORCH_CHECK(k.size(0) == batch && k.size(2) == q.size(2) && v.size(0) == batch &&
                  v.size(1) == m && d_o.sizes() == o.sizes() && o.size(0) == batch &&
                  o.size(1) == n && o.size(2) == v.size(2) && lse.size(0) == batch &&
                  lse.size(1) == n,
              "sacolor cpu kernel: inconsistent shapes q ", q.sizes(), ", k ", k.sizes(), ", v ",
              v.sizes(), ", d_o ", d_o.sizes(), ", o ", o.sizes(), ", lse ", lse.sizes());
  if (acc == at::kDouble) return attention_backward<double>(q, k, v, d_o, o, lse, scale);
  if (bf16_operands) {
    if (const Bf16KernelTable* bf16 = bf16_kernels())
      return attention_backward_bf16(q, k, v, d_o, o, lse, scale, *bf16);
    return attention_backward<float>(q, k.to(acc), v.to(acc), d_o, o, lse, scale);
  }
  return attention_backward<float>(q, k, v, d_o, o, lse, scale);
}

// The kernel path this call takes for inputs of `dtype` (float32 by default).
std::string cpu_isa(std::optional<at::ScalarType> dtype) {
  const Isa isa = current_isa();
  const at::ScalarType t = dtype.value_or(at::kFloat);
  if (t == at::kDouble) return generic_f64()->isa;
  if (t == at::kBFloat16)
    if (const Bf16KernelTable* bf16 = bf16_kernels()) return bf16->isa;
  return float_kernels(isa).isa;
}

// x = exp2(x) in place with the exp2 of this call's float32 tiles (the bf16
// tiles' softmax uses the AVX-512 one too): the exp term of benchmarks/floor.py.
Tensor cpu_exp2_(Tensor x) {
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat && x.is_contiguous(),
                    "cpu_exp2_: x must be a contiguous float32 tensor; got ", x.scalar_type());
  float_kernels(current_isa()).exp2_inplace(x.data_ptr<float>(), x.numel());
  return x;
}

// Every path, each with "" when this machine runs it or the CPU flag it lacks.
std::vector<std::string> cpu_isa_names() {
  std::vector<std::string> names;
  for (Isa isa : kAllIsas) names.emplace_back(isa_name(isa));
  return names;
}
std::string cpu_isa_missing(const std::string& name) {
  for (Isa isa : kAllIsas)
    if (name == isa_name(isa)) return isa_missing(isa);
  TORCH_CHECK_VALUE(false, "unknown cpu kernel path ", name);
}

}  // namespace
}  // namespace sacolor::cpu

TORCH_LIBRARY_FRAGMENT(sacolor_C, m) {
  // Which tile kernels the CPU path runs for inputs of `dtype` (float32 when
  // None) on this call ("generic", "avx2", "avx512", "avx512bf16", "amx");
  // for SelfAttention.explain, benchmarks and bug reports.
  m.def("cpu_isa(ScalarType? dtype=None) -> str", &sacolor::cpu::cpu_isa);
  // Every path, and what this machine lacks to run one ("" when it runs it).
  m.def("cpu_isa_names() -> str[]", &sacolor::cpu::cpu_isa_names);
  m.def("cpu_isa_missing(str name) -> str", &sacolor::cpu::cpu_isa_missing);
  // The kernels' own exp2, in place, for the floor's exp term (benchmarks/floor.py).
  m.def("cpu_exp2_(Tensor(a!) x) -> Tensor(a!)", &sacolor::cpu::cpu_exp2_);
}

TORCH_LIBRARY_IMPL(sacolor_C, CPU, m) {
  m.impl("self_attention_fwd", &sacolor::cpu::self_attention_fwd);
  m.impl("attention_bwd", &sacolor::cpu::attention_bwd);
}
