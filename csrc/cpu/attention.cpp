// The CPU implementation of sacolor_C::self_attention_fwd / _bwd (schemas in
// csrc/ops.cpp): the 1x1 projections, pooling and epilogue run as ATen ops on
// (B, positions, channels) tensors; the attention itself runs in the tile
// kernels of tiles_*.cpp, chosen at run time for the CPU, with OpenMP over
// (batch, block) through at::parallel_for. Nothing N x M is ever allocated:
// extra memory is O(B * N * (qk + v)) plus O(threads * N * qk) for the dq parts.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "tiles.h"

namespace sacolor::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

constexpr double kLog2e = 1.442695040888963407359924681001892137;

// ---- which kernels -------------------------------------------------------

bool cpu_has_avx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// The best kernels for this CPU. SACOLOR_CPU_ISA=generic forces the portable
// ones (the tests use it to cover them on an AVX2 machine).
const KernelTable<float>& float_kernels() {
  const char* env = std::getenv("SACOLOR_CPU_ISA");
  const std::string forced = env ? env : "";
  TORCH_CHECK(forced.empty() || forced == "generic" || forced == "avx2",
              "SACOLOR_CPU_ISA=", forced, " is not one of: generic, avx2");
  const bool avx2 = cpu_has_avx2() && avx2_f32() != nullptr;
  TORCH_CHECK(forced != "avx2" || avx2,
              "SACOLOR_CPU_ISA=avx2, but this CPU or build has no AVX2+FMA kernels");
  return (avx2 && forced != "generic") ? *avx2_f32() : *generic_f32();
}

template <typename T>
const KernelTable<T>& kernels();
template <>
const KernelTable<float>& kernels<float>() { return float_kernels(); }
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
                  x.scalar_type() == at::kBFloat16,
              "sacolor cpu kernel: x has dtype ", x.scalar_type(),
              "; supported: float32, float64, bfloat16");
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
  const std::pair<const OptTensor*, const char*> optional[] = {
      {&bq, "bq"}, {&bk, "bk"}, {&bv, "bv"}, {&wo, "wo"}, {&bo, "bo"}};
  for (const auto& [t, name] : optional)
    if (t->has_value()) check_same_dtype(**t, name, x);
}

// The inputs in the accumulation dtype (float64 stays, the rest is float32).
struct Operands {
  Tensor x;           // (B, C, H, W)
  Tensor wq, wk, wv;  // (qk, C), (qk, C), (v, C)
  OptTensor bq, bk, bv, wo, bo;
  Tensor gamma;  // 0-dim
  int64_t pool;

  int64_t batch() const { return x.size(0); }
  int64_t channels() const { return x.size(1); }
  int64_t queries() const { return x.size(2) * x.size(3); }
  int64_t keys() const { return queries() / (pool * pool); }
  Tensor x_rows() const { return x.view({batch(), channels(), queries()}); }  // (B, C, N)
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
  return {cast(x),      cast(wq),     cast(wk),     cast(wv),     cast_opt(bq),
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
// sacolor/inputs.py). kv_full and kv_index let the backward send each pooled
// gradient back to its argmax; they are undefined when pool == 1 or the
// index was skipped.
struct Projections {
  Tensor q;         // (B, qk, N)
  Tensor k;         // (B, qk, M)
  Tensor v;         // (B, v, M)
  Tensor kv_full;   // (B, qk + v, H, W), before pooling
  Tensor kv_index;  // (B, qk + v, H / pool, W / pool)
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

// The forward needs no argmax, only the pooled values.
enum class PoolIndex { kSkip, kKeep };

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

Projections project_all(const Operands& op, PoolIndex pool_index) {
  const int64_t qk = op.wq.size(0), v = op.wv.size(0);
  const auto [w, b] = stacked_weights(op);
  const Tensor all = project(w, b, op.x_rows());
  const Tensor q = all.narrow(1, 0, qk), kv = all.narrow(1, qk, qk + v);
  if (op.pool == 1) return {q, kv.narrow(1, 0, qk), kv.narrow(1, qk, v), Tensor(), Tensor()};
  const int64_t p = op.pool;
  const Tensor full = kv.reshape({op.batch(), qk + v, op.x.size(2), op.x.size(3)});
  Tensor pooled, index;
  if (pool_index == PoolIndex::kKeep) {
    std::tie(pooled, index) = at::max_pool2d_with_indices(full, {p, p}, {p, p});
  } else {
    pooled = max_pool_values(full, p);
  }
  const Tensor kv_pooled = pooled.reshape({op.batch(), qk + v, op.keys()});
  return {q, kv_pooled.narrow(1, 0, qk), kv_pooled.narrow(1, qk, v),
          index.defined() ? full : Tensor(), index};
}

// The gradient (B, 2 qk + v, N) of the stacked projection's output, at full
// resolution, from dq (B, N, qk), dk (B, M, qk) and dv (B, M, v).
Tensor stacked_grad(const Operands& op, const Projections& proj, const Tensor& dq,
                    const Tensor& dk, const Tensor& dv) {
  Tensor dkv = at::cat({dk, dv}, 2).transpose(1, 2);  // (B, qk + v, M)
  if (op.pool > 1) {
    const int64_t p = op.pool;
    dkv = at::max_pool2d_with_indices_backward(dkv.reshape(proj.kv_index.sizes()), proj.kv_full,
                                               {p, p}, {p, p}, {0, 0}, {1, 1}, false,
                                               proj.kv_index)
              .view({op.batch(), dkv.size(1), op.queries()});
  }
  return at::cat({dq.transpose(1, 2), dkv}, 1);
}

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// t (B, r, c) zero-padded (or `fill`-padded) to (B, rows, cols), contiguous.
Tensor padded(const Tensor& t, int64_t rows, int64_t cols, double fill = 0.0) {
  return at::constant_pad_nd(t, {0, cols - t.size(2), 0, rows - t.size(1)}, fill).contiguous();
}

// The right-hand operand layout of the tile kernels (tiles.h): t (B, depth,
// cols) zero-padded to (B, depth_pad, cols_pad), stored as (B, cols_pad /
// width, depth_pad, width).
Tensor panels(const Tensor& t, int64_t depth_pad, int64_t cols_pad, int64_t width) {
  const Tensor p = padded(t, depth_pad, cols_pad);
  return p.view({p.size(0), depth_pad, cols_pad / width, width}).permute({0, 2, 1, 3}).contiguous();
}

// Padded sizes shared by the forward and the backward of one call.
struct Sizes {
  int64_t batch, n, m, n_pad, m_pad, qk, qk_pad, v, v_pad;

  template <typename T>
  static Sizes of(const Operands& op, const KernelTable<T>& kt) {
    const int64_t qk = op.wq.size(0), v = op.wv.size(0);
    return {op.batch(),
            op.queries(),
            op.keys(),
            round_up(op.queries(), kt.block_m),
            round_up(op.keys(), kt.block_n),
            qk,
            round_up(qk, kt.width),
            v,
            round_up(v, kt.width)};
  }
};

// Runs task(i, scratch) for every i in [0, count) on torch's threads (so
// torch.set_num_threads applies), each thread taking the next index not yet
// taken. On a shared machine a thread the OS delays holds up only the task it
// is on, not a fixed half of the work. `scratch` is per thread.
template <typename T, typename Task>
void for_each_task(int64_t count, int64_t scratch_size, const Task& task) {
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), count));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    std::vector<T> scratch(scratch_size);
    for (int64_t i = next++; i < count; i = next++) task(i, scratch.data());
  });
}

// ---- forward -------------------------------------------------------------

// o (B, N, v) and lse (B, N) of the attention core.
template <typename T>
std::tuple<Tensor, Tensor> attention_forward(const Operands& op, double scale) {
  const KernelTable<T>& kt = kernels<T>();
  const Sizes s = Sizes::of(op, kt);
  const Projections proj = project_all(op, PoolIndex::kSkip);
  const Tensor q = padded((proj.q * (scale * kLog2e)).transpose(1, 2), s.n_pad, s.qk_pad);
  const Tensor k_t = panels(proj.k, s.qk, s.m_pad, kt.width);
  const Tensor v = panels(proj.v.transpose(1, 2), s.m_pad, s.v_pad, kt.width);
  Tensor o = at::empty({s.batch, s.n, s.v}, op.x.options());
  Tensor lse = at::empty({s.batch, s.n}, op.x.options());

  const int64_t blocks = s.n_pad / kt.block_m;
  const T* q_ptr = q.data_ptr<T>();
  const T* k_ptr = k_t.data_ptr<T>();
  const T* v_ptr = v.data_ptr<T>();
  T* o_ptr = o.data_ptr<T>();
  T* lse_ptr = lse.data_ptr<T>();
  const int64_t scratch = kt.forward_scratch(s.qk_pad, s.v_pad);
  for_each_task<T>(s.batch * blocks, scratch, [&](int64_t task, T* work) {
    const int64_t b = task / blocks;
    const ForwardProblem<T> p{q_ptr + b * s.n_pad * s.qk_pad,
                              k_ptr + b * s.qk * s.m_pad,
                              v_ptr + b * s.m_pad * s.v_pad,
                              o_ptr + b * s.n * s.v,
                              lse_ptr + b * s.n,
                              s.n, s.m, s.n_pad, s.m_pad, s.qk, s.qk_pad, s.v, s.v_pad};
    kt.forward_block(p, task % blocks, work);
  });
  return {o, lse};
}

// The op's output after the attention core: (Wo o + bo) (B, N, C), or o.
Tensor output_rows(const Operands& op, const Tensor& o) {
  return op.wo.has_value() ? at::linear(o, *op.wo, op.bo) : o;
}

std::tuple<Tensor, Tensor, Tensor> self_attention_fwd(
    const Tensor& x, const Tensor& wq, const OptTensor& bq, const Tensor& wk, const OptTensor& bk,
    const Tensor& wv, const OptTensor& bv, const OptTensor& wo, const OptTensor& bo,
    const Tensor& gamma, int64_t pool, double scale) {
  check_inputs(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool);
  const Operands op = cast_operands(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool);
  auto [o, lse] = op.x.scalar_type() == at::kDouble ? attention_forward<double>(op, scale)
                                                    : attention_forward<float>(op, scale);
  const Tensor attended = output_rows(op, o).transpose(1, 2).reshape(op.x.sizes());
  const Tensor y = op.x + op.gamma * attended;
  return {y.to(x.scalar_type()).contiguous(), o, lse};
}

// ---- backward ------------------------------------------------------------

// Raw gradient sums of the attention core w.r.t. q (B, N, qk), k (B, M, qk) and
// v (B, M, v), given dO (B, N, v); dq and dk still lack the factor `scale`.
template <typename T>
std::tuple<Tensor, Tensor, Tensor> attention_backward(const Operands& op, const Tensor& q_cols,
                                                      const Tensor& k_cols, const Tensor& v_cols,
                                                      const Tensor& d_o, const Tensor& o,
                                                      const Tensor& lse, double scale) {
  const KernelTable<T>& kt = kernels<T>();
  const Sizes s = Sizes::of(op, kt);
  const Tensor q_t = panels(q_cols * (scale * kLog2e), s.qk, s.n_pad, kt.width);
  const Tensor q = panels(q_cols.transpose(1, 2), s.n_pad, s.qk_pad, kt.width);
  const Tensor k = padded(k_cols.transpose(1, 2), s.m_pad, s.qk_pad);
  // Each row of dS sums to 0 and each row of P to 1, so subtracting the mean
  // key from k in dq = dS k, and the mean value from v and o in
  // dS = P (dO v^T - rowsum(dO o)), changes nothing exactly but removes the
  // cancellation a common offset (a bias, or the max-pool's positive mean)
  // causes in float32.
  const Tensor k_mean = k_cols.mean(-1, true), v_mean = v_cols.mean(-1, true);
  const Tensor k_centered = panels((k_cols - k_mean).transpose(1, 2), s.m_pad, s.qk_pad, kt.width);
  const Tensor v = padded((v_cols - v_mean).transpose(1, 2), s.m_pad, s.v_pad);
  const Tensor dout = panels(d_o, s.n_pad, s.v_pad, kt.width);
  const Tensor dout_t = panels(d_o.transpose(1, 2), s.v, s.n_pad, kt.width);
  // +inf log-sum-exp on padded queries gives them probability 0.
  const Tensor lse2 = padded(lse.unsqueeze(1), 1, s.n_pad, INFINITY);
  const Tensor delta =
      padded((d_o * (o - v_mean.transpose(1, 2))).sum(-1).unsqueeze(1), 1, s.n_pad);
  Tensor dk = at::empty({s.batch, s.m_pad, s.qk_pad}, op.x.options());
  Tensor dv = at::empty({s.batch, s.m_pad, s.v_pad}, op.x.options());

  // Parallel over key blocks; dq is a sum over key blocks, so each part (a
  // contiguous run of (batch, key block) tasks, four parts per thread for
  // load balance) sums into its own buffer and the parts are added in a fixed
  // order afterwards: no atomics, and the same bits on every run with the
  // same thread count. Extra memory: O((B + 4 * threads) * N * qk).
  const int64_t key_blocks = s.m_pad / kt.block_n;
  const int64_t tasks = s.batch * key_blocks;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(4 * at::get_num_threads(), tasks));
  auto first_task = [&](int64_t part) { return part * tasks / parts; };
  auto first_batch = [&](int64_t part) { return first_task(part) / key_blocks; };
  auto batches = [&](int64_t part) {
    return (first_task(part + 1) - 1) / key_blocks - first_batch(part) + 1;
  };
  std::vector<Tensor> dq_parts;
  for (int64_t part = 0; part < parts; ++part)
    dq_parts.push_back(at::zeros({batches(part), s.n_pad, s.qk_pad}, op.x.options()));

  const T *qt_ptr = q_t.data_ptr<T>(), *q_ptr = q.data_ptr<T>(), *k_ptr = k.data_ptr<T>();
  const T *kc_ptr = k_centered.data_ptr<T>(), *v_ptr = v.data_ptr<T>();
  const T* dout_ptr = dout.data_ptr<T>();
  const T *dout_t_ptr = dout_t.data_ptr<T>(), *lse2_ptr = lse2.data_ptr<T>();
  const T* delta_ptr = delta.data_ptr<T>();
  T *dk_ptr = dk.data_ptr<T>(), *dv_ptr = dv.data_ptr<T>();
  const int64_t scratch = kt.backward_scratch(s.qk_pad, s.v_pad);
  for_each_task<T>(parts, scratch, [&](int64_t part, T* work) {
    T* dq_part = dq_parts[part].data_ptr<T>();
    for (int64_t task = first_task(part); task < first_task(part + 1); ++task) {
      const int64_t b = task / key_blocks;
      const BackwardProblem<T> p{
          qt_ptr + b * s.qk * s.n_pad,
          q_ptr + b * s.n_pad * s.qk_pad,
          k_ptr + b * s.m_pad * s.qk_pad,
          kc_ptr + b * s.m_pad * s.qk_pad,
          v_ptr + b * s.m_pad * s.v_pad,
          dout_ptr + b * s.n_pad * s.v_pad,
          dout_t_ptr + b * s.v * s.n_pad,
          lse2_ptr + b * s.n_pad,
          delta_ptr + b * s.n_pad,
          dq_part + (b - first_batch(part)) * s.n_pad * s.qk_pad,
          dk_ptr + b * s.m_pad * s.qk_pad,
          dv_ptr + b * s.m_pad * s.v_pad,
          s.n, s.m, s.n_pad, s.m_pad, s.qk, s.qk_pad, s.v, s.v_pad};
      kt.backward_block(p, task % key_blocks, work);
    }
  });
  Tensor dq = at::zeros({s.batch, s.n_pad, s.qk_pad}, op.x.options());
  for (int64_t part = 0; part < parts; ++part)
    dq.narrow(0, first_batch(part), batches(part)).add_(dq_parts[part]);
  auto crop = [](const Tensor& t, int64_t rows, int64_t cols) {
    return t.narrow(1, 0, rows).narrow(2, 0, cols);
  };
  return {crop(dq, s.n, s.qk).mul(scale), crop(dk, s.m, s.qk).mul(scale), crop(dv, s.m, s.v)};
}

// Weight gradient (out, C) of a projection from d_cols (B, out, L) and its input src (B, C, L).
Tensor weight_grad(const Tensor& d_cols, const Tensor& src) {
  return at::matmul(d_cols, src.transpose(1, 2)).sum(0);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
self_attention_bwd(const Tensor& dy, const Tensor& x, const Tensor& wq, const OptTensor& bq,
                   const Tensor& wk, const OptTensor& bk, const Tensor& wv, const OptTensor& bv,
                   const OptTensor& wo, const OptTensor& bo, const Tensor& gamma, const Tensor& o,
                   const Tensor& lse, int64_t pool, double scale) {
  check_inputs(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool);
  check_same_dtype(dy, "dy", x);
  const Operands op = cast_operands(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool);
  TORCH_CHECK(o.scalar_type() == op.x.scalar_type() && lse.scalar_type() == op.x.scalar_type(),
              "sacolor cpu kernel: o and lse must have the accumulation dtype ",
              op.x.scalar_type());
  TORCH_CHECK(o.is_contiguous() && lse.is_contiguous(),
              "sacolor cpu kernel: o and lse must be contiguous");
  TORCH_CHECK(dy.sizes() == x.sizes(), "sacolor cpu kernel: dy must have x's shape ", x.sizes());

  const int64_t batch = op.batch(), channels = op.channels();
  const Tensor dy_rows = dy.to(op.x.scalar_type()).view({batch, channels, -1}).transpose(1, 2);
  const Tensor d_out = dy_rows * op.gamma;  // (B, N, C)
  const Tensor dgamma = (dy_rows * output_rows(op, o)).sum();
  Tensor dwo, dbo, d_o = d_out;
  if (op.wo.has_value()) {
    dwo = weight_grad(d_out.transpose(1, 2), o.transpose(1, 2));
    if (op.bo.has_value()) dbo = d_out.sum({0, 1});
    d_o = at::matmul(d_out, *op.wo);
  }
  d_o = d_o.contiguous();
  const Projections proj = project_all(op, PoolIndex::kKeep);
  auto [dq, dk, dv] =
      op.x.scalar_type() == at::kDouble
          ? attention_backward<double>(op, proj.q, proj.k, proj.v, d_o, o, lse, scale)
          : attention_backward<float>(op, proj.q, proj.k, proj.v, d_o, o, lse, scale);

  // Through the pooling and the stacked projection: one GEMM each for dx and dW.
  const Tensor d_all = stacked_grad(op, proj, dq, dk, dv);  // (B, 2 qk + v, N)
  const Tensor x_rows = op.x_rows();
  const Tensor dx = dy.to(op.x.scalar_type()).view({batch, channels, -1}) +
                    at::matmul(stacked_weights(op).first.t(), d_all);
  const Tensor dw_all = weight_grad(d_all, x_rows), db_all = d_all.sum({0, 2});
  // Rows (first, count) of q, k and v in the stack.
  const int64_t qk = op.wq.size(0);
  const std::array<std::pair<int64_t, int64_t>, 3> rows = {
      {{0, qk}, {qk, qk}, {2 * qk, op.wv.size(0)}}};
  auto part = [&](const Tensor& t, int which) {
    return t.narrow(0, rows[which].first, rows[which].second);
  };

  // Fresh tensors in each input's dtype and shape (parts of one stacked
  // gradient must not alias each other); absent inputs get empty ones.
  auto like = [&](const Tensor& g, const Tensor& input) {
    return g.reshape(input.sizes()).to(input.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  };
  auto like_opt = [&](const Tensor& g, const OptTensor& input) {
    return input.has_value() ? like(g, *input) : x.new_empty({0});
  };
  return {like(dx, x),
          like(part(dw_all, 0), wq),
          like_opt(part(db_all, 0), bq),
          like(part(dw_all, 1), wk),
          like_opt(part(db_all, 1), bk),
          like(part(dw_all, 2), wv),
          like_opt(part(db_all, 2), bv),
          like_opt(dwo, wo),
          like_opt(dbo, bo),
          like(dgamma, gamma)};
}

std::string cpu_isa() { return float_kernels().isa; }

}  // namespace
}  // namespace sacolor::cpu

TORCH_LIBRARY_FRAGMENT(sacolor_C, m) {
  // Which tile kernels the float32 CPU path runs on this machine ("avx2" or
  // "generic"); for benchmarks and bug reports.
  m.def("cpu_isa() -> str", &sacolor::cpu::cpu_isa);
}

TORCH_LIBRARY_IMPL(sacolor_C, CPU, m) {
  m.impl("self_attention_fwd", &sacolor::cpu::self_attention_fwd);
  m.impl("self_attention_bwd", &sacolor::cpu::self_attention_bwd);
}
