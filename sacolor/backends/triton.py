"""The fused Triton kernels of ``kernels/`` (installed as ``sacolor.kernels``).

Runs on CUDA tensors. With TRITON_INTERPRET=1 the same kernels run on CPU
tensors through Triton's interpreter; that path is for testing, so
``backend="auto"`` never picks it (``accepts_auto``): only an explicit
``backend="triton"`` does.

Around the kernels, in PyTorch: the key/value projection GEMM (and the
max-pool after it, BigGAN order), and in the backward the gradient of o
through gamma and Wo, delta = rowsum(dO * O), and the projection weight, bias
and x gradients from dQ, dK, dV (GEMMs and reductions, as in
``reference_backward``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType

import torch
from torch import Tensor

from ..inputs import AttentionInputs
from .base import Backend, ForwardResult, Gradients
from .projection import max_pool_positions, project, unpool_positions
from .reference import pack_gradients

INTERPRET_ENV_VAR = "TRITON_INTERPRET"
ROW_ALIGNMENT = 16  # elements


def _interpreting() -> bool:
    return os.environ.get(INTERPRET_ENV_VAR, "0") == "1"


def _kernels(name: str) -> ModuleType:
    """A kernel module, imported on first use: importing it imports Triton."""
    return importlib.import_module(f"sacolor.kernels.{name}")


def _on_device_of(t: Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the current CUDA device: make it ``t``'s (e.g. cuda:1)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _aligned_rows(t: Tensor) -> Tensor:
    """``t`` (..., n) with each row starting a multiple of 16 elements apart.

    Same values (a view into a zero-padded buffer when n is not a multiple of
    16): Triton then specialises the row stride as divisible by 16 and the
    kernels' main-loop loads become 16-byte vectors pipelined with cp.async.
    """
    n = t.shape[-1]
    if n % ROW_ALIGNMENT == 0 and t.is_contiguous():
        return t
    padded = t.new_zeros(*t.shape[:-1], -(-n // ROW_ALIGNMENT) * ROW_ALIGNMENT)
    padded[..., :n] = t
    return padded[..., :n]


def _keys_values(inputs: AttentionInputs) -> tuple[Tensor, Tensor, Tensor | None]:
    """k (B, M, qk) and v (B, M, v) in x's dtype, from one GEMM, then the max-pool.

    Pools after the projection (BigGAN order, see ``sacolor.inputs``). Returns
    k, v and the pool's argmax (None when pool == 1).
    """
    x = inputs.x
    w = torch.cat([inputs.wk, inputs.wv])
    b = None
    if inputs.bk is not None or inputs.bv is not None:
        b = torch.cat([
            inputs.bk if inputs.bk is not None else inputs.wk.new_zeros(inputs.qk_channels),
            inputs.bv if inputs.bv is not None else inputs.wv.new_zeros(inputs.v_channels),
        ])
    kv = project(w, b, x.flatten(2))  # (B, N, qk + v)
    kv, indices = max_pool_positions(kv, inputs.pool, *x.shape[2:])
    k, v = (_aligned_rows(t) for t in kv.split([inputs.qk_channels, inputs.v_channels], dim=-1))
    return k, v, indices


def _weight_grad(d: Tensor, src: Tensor) -> Tensor:
    """d (B, N, out) and src (B, C, N) -> (out, C): the gradient of a 1x1 projection."""
    return torch.einsum("bno,bcn->oc", d, src)


class TritonBackend(Backend):
    name = "triton"
    priority = 30
    devices = frozenset({"cuda"})
    dtypes = frozenset({torch.float32, torch.bfloat16, torch.float16})
    # The widest query tile the compile tests check for spills (qk = C / 8 at C = 512);
    # v has no limit: values wider than one slice are split across programs.
    max_qk_channels = 64

    def unavailable_reason(self) -> str | None:
        try:
            import triton  # noqa: F401
        except ImportError as err:
            return f"triton did not import ({err}); install it with `pip install triton`"
        if not _interpreting() and not torch.cuda.is_available():
            return f"no CUDA device ({INTERPRET_ENV_VAR}=1 runs the kernels on the CPU, for tests)"
        return None

    def supports_device(self, device: torch.device) -> bool:
        return device.type == "cuda" or (device.type == "cpu" and _interpreting())

    def accepts_auto(self, inputs: AttentionInputs) -> bool:
        # The interpreter is a test harness, far slower than the cpu backend.
        return inputs.x.device.type == "cuda"

    def forward(self, inputs: AttentionInputs) -> ForwardResult:
        x = inputs.x
        batch, channels, height, width = x.shape
        k, v, _ = _keys_values(inputs)
        with _on_device_of(x):
            y, o, lse = _kernels("attention_fwd").launch_attention_fwd(
                x.view(batch, channels, height * width), inputs.wq, inputs.bq, k, v,
                inputs.wo, inputs.bo, inputs.gamma, float(inputs.scale),
            )
        return ForwardResult(y.view(x.shape), o, lse)

    def backward(self, inputs: AttentionInputs, dy: Tensor, o: Tensor, lse: Tensor) -> Gradients:
        x = inputs.x
        k, v, pool_indices = _keys_values(inputs)
        q = _aligned_rows(project(inputs.wq, inputs.bq, x.flatten(2)))
        f32 = {name: None if t is None else t.float() for name, t in inputs.named_tensors().items()}

        # Through the epilogue: y = gamma * (Wo o + bo) + x.
        dy_t = dy.float().flatten(2).transpose(1, 2)  # (B, N, C)
        out = o if f32["wo"] is None else project(f32["wo"], f32["bo"], o.transpose(1, 2))
        grads = {"gamma": (dy_t * out).sum().reshape(inputs.gamma.shape)}
        d_out = f32["gamma"].reshape(()) * dy_t
        d_o = d_out
        if f32["wo"] is not None:
            grads["wo"] = torch.einsum("bnc,bnv->cv", d_out, o)
            if f32["bo"] is not None:
                grads["bo"] = d_out.sum((0, 1))
            d_o = d_out @ f32["wo"]
        delta = (d_o * o).sum(-1)

        with _on_device_of(x):
            dq, dk, dv = _kernels("attention_bwd").launch_attention_bwd(
                q, k, v, _aligned_rows(d_o.to(x.dtype)), lse, delta, float(inputs.scale)
            )

        # Through the pool and the projections q = Wq x + bq, [k v] = [Wk Wv] x + [bk bv].
        dkv = unpool_positions(torch.cat([dk, dv], dim=-1), pool_indices, inputs.pool, *x.shape[2:])
        w_kv = torch.cat([f32["wk"], f32["wv"]])
        x_f32 = f32["x"].flatten(2)
        dk, dv = dkv.split([inputs.qk_channels, inputs.v_channels], dim=-1)
        for name, d in (("q", dq), ("k", dk), ("v", dv)):  # d: (B, N, out), full resolution
            grads[f"w{name}"] = _weight_grad(d, x_f32)
            if f32[f"b{name}"] is not None:
                grads[f"b{name}"] = d.sum((0, 1))
        if f32["bk"] is not None:
            # bk adds q.bk to every score of a query's row, which the softmax ignores:
            # its gradient is exactly zero (summing dk would only return rounding noise).
            grads["bk"] = torch.zeros_like(f32["bk"])
        d_x = dq @ f32["wq"] + dkv @ w_kv  # (B, N, C)
        grads["x"] = dy.float() + d_x.transpose(1, 2).reshape(x.shape)
        originals = inputs.named_tensors()
        return pack_gradients(inputs, {name: g.to(originals[name].dtype) for name, g in grads.items()})
