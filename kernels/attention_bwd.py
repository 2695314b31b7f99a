"""Backward of the fused self-attention: dQ, dK, dV from the saved lse.

The caller has already turned dy into dO (the gradient of o, through gamma
and Wo) and computed delta = rowsum(dO * O), the pre-pass of the flash
backward. Two kernels then recompute the softmax tile by tile from lse, so the
N x M matrix never exists:

- ``_attn_bwd_dkdv``: one program per (batch, key tile); loops over query
  tiles accumulating dV = P^T dO and dK = scale * dS^T Q;
- ``_attn_bwd_dq``: one program per (batch, query tile); loops over key tiles
  accumulating dQ = scale * dS K;

with P = exp2(q.k - lse), q the forward's saved queries (times scale * log2 e,
rounded to the input dtype exactly as the forward rounded them) and lse in
base 2, and dS = P * (dO V^T - delta); dQ then carries the factor scale and dK
the factor ln 2 (the derivatives of the base-2 scores).
Each program owns its output rows, so there are no atomics and the result is
deterministic. Values wider than MAX_BLOCK_V are split: a dK-only launch
streams every slice of v and dO for dO V^T, and a dV-only launch runs one
program per (key tile, value slice); keeping the dK and dV accumulators in
separate programs is what keeps those variants from spilling.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (
    LN2,
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

# Channels per step when dO V^T streams a split v (smaller than a value slice:
# fewer registers in the inner loop).
SPLIT_CHUNK = tl.constexpr(32)

# BLOCK_N keys owned per program, BLOCK_M queries per inner iteration, per
# config family; the first of each is the default. The transposed score tile
# has BLOCK_N rows: 64 for 4 warps on the tensor cores (see attention_fwd);
# with BLOCK_M 16 instead of 32, sm_80 splits it over warps that duplicate
# the exps once the value slice is 128 wide. None spills.
DKDV_CONFIGS = {
    "16bit": configs([(32, 64, 4, 2), (32, 64, 4, 3)]),
    # fp32 operands: 128 key rows on 8 warps (16 each); 64-key tiles spill on sm_80.
    "tf32": configs([(16, 128, 8, 2)]),
    "fp32": configs([(16, 32, 8, 2), (32, 16, 8, 2)]),
}


@triton.jit
def _attn_bwd_dkdv(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
    N, M, V,
    stride_q_b, stride_q_n, stride_q_c,
    stride_k_b, stride_k_n, stride_k_c,
    stride_v_b, stride_v_n, stride_v_c,
    stride_do_b, stride_do_n, stride_do_c,
    stride_lse_b, stride_lse_n,
    stride_delta_b, stride_delta_n,
    stride_dk_b, stride_dk_n, stride_dk_c,
    stride_dv_b, stride_dv_n, stride_dv_c,
    COMPUTE_DK: tl.constexpr, COMPUTE_DV: tl.constexpr, SPLIT_V: tl.constexpr,
    QK: tl.constexpr, QK_PAD: tl.constexpr, BLOCK_V: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    v_block = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < M
    offs_qk = tl.arange(0, QK_PAD)
    mask_qk = offs_qk < QK
    offs_v = v_block * BLOCK_V + tl.arange(0, BLOCK_V)
    mask_v = offs_v < V
    q_ptr += pid_b * stride_q_b
    k_ptr += pid_b * stride_k_b
    v_ptr += pid_b * stride_v_b
    do_ptr += pid_b * stride_do_b
    lse_ptr += pid_b * stride_lse_b
    delta_ptr += pid_b * stride_delta_b

    k = load_tile(k_ptr, offs_n, mask_n, stride_k_n, offs_qk, mask_qk, stride_k_c)
    if not SPLIT_V:  # one slice holds all of v: keep the value tile in registers
        v = load_tile(v_ptr, offs_n, mask_n, stride_v_n, offs_v, mask_v, stride_v_c)
    dk = tl.zeros((BLOCK_N, QK_PAD), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    for m0 in range(0, N, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < N
        q_t = load_tile(q_ptr, offs_qk, mask_qk, stride_q_c, offs_m, mask_m, stride_q_n)
        # lse = +inf past the last query makes those columns of P exactly 0.
        lse = tl.load(lse_ptr + offs_m * stride_lse_n, mask=mask_m, other=float("inf"))
        p_t = tl.math.exp2(tl.dot(k, q_t, input_precision=INPUT_PRECISION) - lse[None, :])
        if COMPUTE_DV or not SPLIT_V:
            do = load_tile(do_ptr, offs_m, mask_m, stride_do_n, offs_v, mask_v, stride_do_c)
        if COMPUTE_DV:
            dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=INPUT_PRECISION)
        if COMPUTE_DK:
            if SPLIT_V:  # dP needs every slice of v and dO
                dp_t = dot_over_channels(
                    v_ptr, stride_v_n, stride_v_c, offs_n, mask_n,
                    do_ptr, stride_do_n, stride_do_c, offs_m, mask_m,
                    V, BLOCK_N, BLOCK_M, SPLIT_CHUNK, INPUT_PRECISION,
                )
            else:
                dp_t = tl.dot(v, tl.trans(do), input_precision=INPUT_PRECISION)
            delta = tl.load(delta_ptr + offs_m * stride_delta_n, mask=mask_m, other=0.0)
            ds_t = p_t * (dp_t - delta[None, :])
            dk = tl.dot(ds_t.to(q_t.dtype), tl.trans(q_t), dk, input_precision=INPUT_PRECISION)

    if COMPUTE_DV:
        store_tile(dv_ptr + pid_b * stride_dv_b, dv, offs_n, mask_n, stride_dv_n, offs_v, mask_v, stride_dv_c)
    if COMPUTE_DK:
        store_tile(
            dk_ptr + pid_b * stride_dk_b, dk * LN2, offs_n, mask_n, stride_dk_n, offs_qk, mask_qk, stride_dk_c,
        )


# BLOCK_M queries owned per program, BLOCK_N keys per inner iteration.
DQ_CONFIGS = {
    "16bit": configs([(64, 32, 4, 2), (64, 64, 4, 2)]),
    "tf32": configs([(128, 32, 8, 2), (64, 16, 4, 2)]),
    "fp32": configs([(32, 32, 8, 2), (16, 32, 8, 2)]),
}


@triton.jit
def _attn_bwd_dq(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
    N, M, V,
    stride_q_b, stride_q_n, stride_q_c,
    stride_k_b, stride_k_n, stride_k_c,
    stride_v_b, stride_v_n, stride_v_c,
    stride_do_b, stride_do_n, stride_do_c,
    stride_lse_b, stride_lse_n,
    stride_delta_b, stride_delta_n,
    stride_dq_b, stride_dq_n, stride_dq_c,
    scale,
    SPLIT_V: tl.constexpr, QK: tl.constexpr, QK_PAD: tl.constexpr, BLOCK_V: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < N
    offs_qk = tl.arange(0, QK_PAD)
    mask_qk = offs_qk < QK
    q_ptr += pid_b * stride_q_b
    k_ptr += pid_b * stride_k_b
    v_ptr += pid_b * stride_v_b
    do_ptr += pid_b * stride_do_b

    q = load_tile(q_ptr, offs_m, mask_m, stride_q_n, offs_qk, mask_qk, stride_q_c)
    lse = tl.load(lse_ptr + pid_b * stride_lse_b + offs_m * stride_lse_n, mask=mask_m, other=0.0)
    delta = tl.load(delta_ptr + pid_b * stride_delta_b + offs_m * stride_delta_n, mask=mask_m, other=0.0)
    offs_v = tl.arange(0, BLOCK_V)
    mask_v = offs_v < V
    if not SPLIT_V:  # one slice holds all of dO: keep it in registers
        do = load_tile(do_ptr, offs_m, mask_m, stride_do_n, offs_v, mask_v, stride_do_c)
    dq = tl.zeros((BLOCK_M, QK_PAD), dtype=tl.float32)
    for n0 in range(0, M, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < M
        k_t = load_tile(k_ptr, offs_qk, mask_qk, stride_k_c, offs_n, mask_n, stride_k_n)
        p = tl.math.exp2(tl.dot(q, k_t, input_precision=INPUT_PRECISION) - lse[:, None])
        p = tl.where(mask_n[None, :], p, 0.0)
        if SPLIT_V:
            dp = dot_over_channels(
                do_ptr, stride_do_n, stride_do_c, offs_m, mask_m,
                v_ptr, stride_v_n, stride_v_c, offs_n, mask_n,
                V, BLOCK_M, BLOCK_N, SPLIT_CHUNK, INPUT_PRECISION,
            )
        else:
            v = load_tile(v_ptr, offs_n, mask_n, stride_v_n, offs_v, mask_v, stride_v_c)
            dp = tl.dot(do, tl.trans(v), input_precision=INPUT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k_t.dtype), tl.trans(k_t), dq, input_precision=INPUT_PRECISION)

    store_tile(
        dq_ptr + pid_b * stride_dq_b, dq * scale, offs_m, mask_m, stride_dq_n, offs_qk, mask_qk, stride_dq_c,
    )


ATTN_BWD_DKDV = TunedKernel(_attn_bwd_dkdv, DKDV_CONFIGS)
ATTN_BWD_DQ = TunedKernel(_attn_bwd_dq, DQ_CONFIGS)


def launch_attention_bwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    d_o: torch.Tensor,
    lse: torch.Tensor,
    delta: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs the dK/dV and dQ kernels on validated tensors.

    Args:
        q: (B, N, qk) the forward's queries, times scale * log2(e); k: (B, M, qk);
            v: (B, M, v); all in the input dtype, any strides.
        d_o: (B, N, v) gradient of o, in the input dtype.
        lse: (B, N) fp32 base-2 log-sum-exp saved by the forward.
        delta: (B, N) fp32 rowsum(dO * O).
        scale: the forward's score scale.

    Returns:
        dq (B, N, qk) w.r.t. the unscaled queries, dk (B, M, qk), dv (B, M, v), all fp32.
    """
    batch, n, qk = q.shape
    m, v_channels = k.shape[1], v.shape[2]
    dq = torch.empty((batch, n, qk), device=q.device, dtype=torch.float32)
    dk = torch.empty((batch, m, qk), device=q.device, dtype=torch.float32)
    dv = torch.empty((batch, m, v_channels), device=q.device, dtype=torch.float32)
    precision = input_precision(q.dtype)
    block_v = value_block(v_channels, precision)
    v_blocks = triton.cdiv(v_channels, block_v)
    common = dict(
        SPLIT_V=v_blocks > 1, QK=qk, QK_PAD=dot_width(qk), BLOCK_V=block_v, INPUT_PRECISION=precision,
    )
    sizes = dict(N=n, M=m, V=v_channels)
    inputs = (
        n, m, v_channels,
        *q.stride(), *k.stride(), *v.stride(), *d_o.stride(), *lse.stride(), *delta.stride(),
    )
    dkdv_args = (q, k, v, d_o, lse, delta, dk, dv, *inputs, *dk.stride(), *dv.stride())
    if v_blocks == 1:
        dkdv = [(1, dict(COMPUTE_DK=True, COMPUTE_DV=True))]
    else:  # dK needs every value slice: its own launch, then one dV program per slice
        dkdv = [(1, dict(COMPUTE_DK=True, COMPUTE_DV=False)), (v_blocks, dict(COMPUTE_DK=False, COMPUTE_DV=True))]
    launches = [
        Launch(
            ATTN_BWD_DKDV, q.dtype, lambda meta, planes=planes: (triton.cdiv(m, meta["BLOCK_N"]), batch, planes),
            dkdv_args, dict(**flags, **common), sizes,
        )
        for planes, flags in dkdv
    ]
    dq_args = (q, k, v, d_o, lse, delta, dq, *inputs, *dq.stride(), scale)
    launches.append(
        Launch(ATTN_BWD_DQ, q.dtype, lambda meta: (triton.cdiv(n, meta["BLOCK_M"]), batch, 1), dq_args, common, sizes)
    )
    for launch in launches:
        launch.run()
    return dq, dk, dv
