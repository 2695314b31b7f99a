"""Forward of the fused SAGAN self-attention (flash-style, O(N) memory).

One program per (batch, query tile, value slice):

1. prologue: q = (Wq x + bq) * scale * log2(e) from the x tile, in registers,
   saved in fp32 (the backward rounds it to the input dtype exactly as here);
2. main loop over key tiles: s = q k^T, online softmax in base 2 (running
   max m, running sum l), acc += p v, all accumulated in fp32;
3. epilogue: o = acc / l, lse = m + log2 l (base 2, as the backward uses it),
   and y = gamma * (Wo o + bo) + x written in x's (B, C, H, W) layout.

Offsets within one image are 32-bit (the backend refuses an image of 2**31
elements or more); the batch offset is 64-bit, so B x C x N may pass 2**31.

Keys and values come precomputed (one projection GEMM for the whole map):
every query tile reads every key, so recomputing them per tile would multiply
that work by N / BLOCK_M. Values wider than MAX_BLOCK_V are split across
programs; then the Wo projection needs the whole row of o and runs after the
kernel instead (``launch_attention_fwd`` does it with one GEMM).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (
    LOG2E,
    MAX_BLOCK_C,
    Launch,
    TunedKernel,
    configs,
    dot_over_channels,
    dot_width,
    input_precision,
    load_tile,
    store_tile,
    value_block,
)


@triton.jit
def _store_y(
    x_ptr, y_ptr, stride_x_c, stride_x_n, stride_y_c, stride_y_n,
    offs_m, mask_m, offs_c, mask_c, out, gamma,
):
    """y[c, m] = gamma * out[m, c] + x[c, m] for one (positions, channels) tile."""
    x = load_tile(x_ptr, offs_m, mask_m, stride_x_n, offs_c, mask_c, stride_x_c)
    y = gamma * out + x.to(tl.float32)
    store_tile(y_ptr, y.to(y_ptr.dtype.element_ty), offs_m, mask_m, stride_y_n, offs_c, mask_c, stride_y_c)


# BLOCK_M queries per program, BLOCK_N keys per inner iteration, per config
# family; the first of each is the default. On the tensor cores (16bit, tf32)
# each warp owns 16 rows of the score tile (4 warps: BLOCK_M 64, 8 warps: 128),
# so no two warps compute the same exponentials, and BLOCK_N = 64 keeps the
# per-row rescale exps under 10 %. (64, 64, 4 warps) 16-bit tiles duplicate
# them on sm_80 once the value slice is 128 wide. Every entry compiles for
# sm_80 and sm_90 without spilling or duplicated exps on every shape of
# benchmarks/aot.py (tests/test_triton_compile.py, benchmarks/TRITON_REPORT.md).
FWD_CONFIGS = {
    "16bit": configs([(128, 64, 8, 3), (128, 64, 8, 2)]),
    "tf32": configs([(64, 64, 4, 2)]),
    # IEEE fp32 dots run on the FMA units; 4-warp or 3-stage variants spill on sm_80.
    "fp32": configs([(16, 64, 8, 2)]),
}


@triton.jit
def _attn_fwd(
    x_ptr, wq_ptr, bq_ptr, k_ptr, v_ptr, wo_ptr, bo_ptr, gamma_ptr,
    y_ptr, o_ptr, lse_ptr, q_ptr,
    N, M, C, V,
    stride_x_b, stride_x_c, stride_x_n,
    stride_wq_o, stride_wq_c,
    stride_k_b, stride_k_n, stride_k_c,
    stride_v_b, stride_v_n, stride_v_c,
    stride_wo_c, stride_wo_v,
    stride_y_b, stride_y_c, stride_y_n,
    stride_o_b, stride_o_n, stride_o_c,
    stride_lse_b, stride_lse_n,
    stride_q_b, stride_q_n, stride_q_c,
    qk_scale,
    HAS_BQ: tl.constexpr, WRITE_Y: tl.constexpr, OUT_PROJ: tl.constexpr, HAS_BO: tl.constexpr,
    QK: tl.constexpr, QK_PAD: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_C: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_v = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < N
    offs_qk = tl.arange(0, QK_PAD)
    mask_qk = offs_qk < QK
    offs_v = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    mask_v = offs_v < V
    x_ptr += pid_b * stride_x_b
    k_ptr += pid_b * stride_k_b
    v_ptr += pid_b * stride_v_b

    # Prologue: the query tile, projected from x and pre-scaled for exp2.
    q = dot_over_channels(
        x_ptr, stride_x_n, stride_x_c, offs_m, mask_m,
        wq_ptr, stride_wq_o, stride_wq_c, offs_qk, mask_qk,
        C, BLOCK_M, QK_PAD, BLOCK_C, INPUT_PRECISION,
    )
    if HAS_BQ:
        q += tl.load(bq_ptr + offs_qk, mask=mask_qk, other=0.0).to(tl.float32)[None, :]
    q = q * qk_scale
    if pid_v == 0:
        store_tile(q_ptr + pid_b * stride_q_b, q, offs_m, mask_m, stride_q_n, offs_qk, mask_qk, stride_q_c)
    q = q.to(k_ptr.dtype.element_ty)

    # Main loop: online softmax over key tiles.
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_V), dtype=tl.float32)
    for n0 in range(0, M, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < M
        k_t = load_tile(k_ptr, offs_qk, mask_qk, stride_k_c, offs_n, mask_n, stride_k_n)
        s = tl.dot(q, k_t, input_precision=INPUT_PRECISION)
        s = tl.where(mask_n[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = load_tile(v_ptr, offs_n, mask_n, stride_v_n, offs_v, mask_v, stride_v_c)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=INPUT_PRECISION)
        m_i = m_new

    # Epilogue: normalise, save o and lse for the backward, then y.
    o = acc / l_i[:, None]
    store_tile(o_ptr + pid_b * stride_o_b, o, offs_m, mask_m, stride_o_n, offs_v, mask_v, stride_o_c)
    lse = m_i + tl.math.log2(l_i)
    if pid_v == 0:
        tl.store(lse_ptr + pid_b * stride_lse_b + offs_m * stride_lse_n, lse, mask=mask_m)
    if WRITE_Y:
        gamma = tl.load(gamma_ptr).to(tl.float32)
        y_ptr += pid_b * stride_y_b
        if OUT_PROJ:
            o_in = o.to(wo_ptr.dtype.element_ty)
            for c0 in range(0, C, BLOCK_C):
                offs_c = c0 + tl.arange(0, BLOCK_C)
                mask_c = offs_c < C
                wo_t = load_tile(wo_ptr, offs_v, mask_v, stride_wo_v, offs_c, mask_c, stride_wo_c)
                out = tl.dot(o_in, wo_t, input_precision=INPUT_PRECISION)
                if HAS_BO:
                    out += tl.load(bo_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
                _store_y(
                    x_ptr, y_ptr, stride_x_c, stride_x_n, stride_y_c, stride_y_n,
                    offs_m, mask_m, offs_c, mask_c, out, gamma,
                )
        else:
            # v == C: this program's value slice is also its slice of y's channels.
            _store_y(
                x_ptr, y_ptr, stride_x_c, stride_x_n, stride_y_c, stride_y_n,
                offs_m, mask_m, offs_v, mask_v, o, gamma,
            )


ATTN_FWD = TunedKernel(_attn_fwd, FWD_CONFIGS)


def launch_attention_fwd(
    x: torch.Tensor,
    wq: torch.Tensor,
    bq: torch.Tensor | None,
    k: torch.Tensor,
    v: torch.Tensor,
    wo: torch.Tensor | None,
    bo: torch.Tensor | None,
    gamma: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs the forward kernel on validated inputs.

    Args:
        x: (B, C, N) input, N = H * W (any strides).
        wq: (qk, C); bq: (qk,) or None.
        k: (B, M, qk) keys, v: (B, M, v) values, in x's dtype (any strides).
        wo: (C, v) or None; bo: (C,) or None (only with wo). Without wo, v == C.
        gamma: one-element tensor.
        scale: multiplies q.k before the softmax.

    Returns:
        y (B, C, N) in x's dtype, o (B, N, v) fp32, lse (B, N) fp32 (base 2), and
        q (B, N, qk) fp32: the queries the scores used, times scale * log2(e).
    """
    batch, channels, n = x.shape
    m, qk, v_channels = k.shape[1], k.shape[2], v.shape[2]
    precision = input_precision(x.dtype)
    block_v = value_block(v_channels, precision)
    v_blocks = triton.cdiv(v_channels, block_v)
    # Wo needs the whole row of o: fused only when one program holds all of v.
    fuse_out_proj = wo is not None and v_blocks == 1
    y = torch.empty_like(x)
    o = torch.empty((batch, n, v_channels), device=x.device, dtype=torch.float32)
    lse = torch.empty((batch, n), device=x.device, dtype=torch.float32)
    q = torch.empty((batch, n, qk), device=x.device, dtype=torch.float32)
    dummy = x.new_empty(0)
    args = (
        x, wq, dummy if bq is None else bq, k, v,
        dummy if wo is None else wo, dummy if bo is None else bo, gamma,
        y, o, lse, q,
        n, m, channels, v_channels,
        *x.stride(), *wq.stride(), *k.stride(), *v.stride(),
        *(wo.stride() if wo is not None else (0, 0)),
        *y.stride(), *o.stride(), *lse.stride(), *q.stride(),
        scale * LOG2E.value,
    )
    constexprs = dict(
        HAS_BQ=bq is not None, WRITE_Y=wo is None or fuse_out_proj,
        OUT_PROJ=fuse_out_proj, HAS_BO=bo is not None,
        QK=qk, QK_PAD=dot_width(qk), BLOCK_V=block_v, BLOCK_C=dot_width(channels, MAX_BLOCK_C),
        INPUT_PRECISION=precision,
    )
    Launch(
        ATTN_FWD, x.dtype, lambda meta: (triton.cdiv(n, meta["BLOCK_M"]), batch, v_blocks),
        args, constexprs, sizes=dict(N=n, M=m, C=channels, V=v_channels),
    ).run()
    if wo is not None and not fuse_out_proj:  # Wo after the kernel
        out = o @ wo.float().t()
        if bo is not None:
            out += bo.float()
        y = (x.float() + gamma.float().reshape(()) * out.transpose(1, 2)).to(x.dtype)
    return y, o, lse, q
