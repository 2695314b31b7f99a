"""Ahead-of-time compilation of every kernel configuration, with no GPU.

``triton.compile(ASTSource(...), target=GPUTarget("cuda", cap, 32))`` runs
the whole pipeline (TTIR, TTGIR, LLVM, PTX, and cubin through the ptxas the
triton wheel ships), so compile errors, and register spills, show up on a
machine without a GPU. Used by tests/test_triton_compile.py and
benchmarks/triton_report.py.

The signatures mirror what a real launch specialises: contiguous inner
strides are the constant 1 (Triton specialises integer arguments equal to 1),
pointers are 16-byte aligned (torch allocations are; the backend passes k and
v as separate contiguous tensors), other integers carry no divisibility hint
unless ``aligned`` (see ``compile_variant``), and o / lse / delta / the
gradients are fp32 whatever the input dtype.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field

import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import sm_arch_from_capability
from triton.compiler import ASTSource

from . import attention_bwd, attention_fwd
from .common import MAX_BLOCK_C, MAX_BLOCK_V, dtype_family

DTYPES = ("fp32", "bf16", "fp16")
CAPABILITIES = (80, 90)
WARP_SIZE = 32

_FP32_POINTERS = frozenset({"o_ptr", "lse_ptr", "delta_ptr", "dq_ptr", "dk_ptr", "dv_ptr"})
_FLOAT_SCALARS = frozenset({"qk_scale", "scale"})
# Innermost strides of the contiguous tensors the launchers pass.
_UNIT_STRIDES = frozenset({
    "stride_x_n", "stride_y_n", "stride_wq_c", "stride_wo_v", "stride_q_c", "stride_k_c",
    "stride_v_c", "stride_o_c", "stride_do_c", "stride_lse_n", "stride_delta_n",
    "stride_dq_c", "stride_dk_c", "stride_dv_c",
})


@dataclass(frozen=True)
class Variant:
    """One compilation: a kernel, its shape constants, one autotune config, one dtype."""

    kernel_name: str
    fn: triton.runtime.JITFunction
    config: triton.Config
    dtype: str
    constants: dict = field(hash=False)
    # Every integer argument divisible by 16, as Triton specialises at run time
    # for sizes like N = 4096, C = 64 (see compile_variant).
    aligned: bool = False

    def describe(self) -> str:
        c = self.config
        shape = ",".join(f"{k}={v}" for k, v in self.constants.items() if k != "INPUT_PRECISION")
        return (
            f"{self.kernel_name} {self.dtype} BLOCK_M={c.kwargs['BLOCK_M']} BLOCK_N={c.kwargs['BLOCK_N']} "
            f"warps={c.num_warps} stages={c.num_stages} [{shape}]{' aligned' if self.aligned else ''}"
        )


def _signature(v: Variant, aligned: bool) -> tuple[dict, dict, dict]:
    """Triton's signature, constexprs and attributes for ``v``."""
    constexprs = {**v.constants, **v.config.kwargs}
    signature, attrs = {}, {}
    for index, name in enumerate(v.fn.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in _UNIT_STRIDES:
            signature[name] = "constexpr"
            constexprs[name] = 1
        elif name.endswith("_ptr"):
            signature[name] = "*fp32" if name in _FP32_POINTERS else f"*{v.dtype}"
            # Fresh torch allocations are 16-byte aligned, and Triton specialises on it.
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif name in _FLOAT_SCALARS:
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
            if aligned:
                attrs[(index,)] = [["tt.divisibility", 16]]
    return signature, constexprs, attrs


def compile_variant(v: Variant, capability: int):
    """Compiles ``v`` for sm_<capability>; returns Triton's CompiledKernel (asm, metadata).

    ``v.aligned`` marks every integer argument divisible by 16, as Triton does
    at run time when sizes and strides are (N = 4096, C = 64, and the row
    strides the backend pads to 16): the loads then become 16-byte vectors
    pipelined with cp.async. Without it, the code is the general one (ragged
    N, odd C): both are compiled and checked.
    """
    signature, constexprs, attrs = _signature(v, v.aligned)
    source = ASTSource(v.fn, signature, constexprs, attrs)
    # fp fusion on, as at run time (stated explicitly: Triton 3.9 warns when it is implicit).
    options = {"num_warps": v.config.num_warps, "num_stages": v.config.num_stages, "enable_fp_fusion": True}
    return triton.compile(source, target=GPUTarget("cuda", capability, WARP_SIZE), options=options)


@dataclass(frozen=True)
class PtxasUsage:
    registers: int
    spill_stores: int  # bytes
    spill_loads: int  # bytes
    shared: int  # bytes of shared memory the launch asks for (Triton's metadata)


def ptxas_usage(compiled, capability: int) -> PtxasUsage:
    """Registers and spills from ``ptxas -v`` on the kernel's PTX, as Triton invokes it.

    Uses the wheel's ``ptxas-blackwell`` (it accepts the PTX Triton 3.9 emits)
    with Triton's own flags (--regAllocOptLevel=2 works around a ptxas 13 bug).
    """
    ptxas = triton.knobs.nvidia.ptxas_blackwell.path
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as ptx:
        ptx.write(compiled.asm["ptx"])
        ptx.flush()
        log = subprocess.run(
            [ptxas, "-lineinfo", "-v", "--regAllocOptLevel=2",
             f"--gpu-name={sm_arch_from_capability(capability)}", ptx.name, "-o", "/dev/null"],
            capture_output=True, text=True, check=True,
        ).stderr

    def number(pattern: str) -> int:
        found = re.search(pattern, log)
        if found is None:
            raise RuntimeError(f"no {pattern!r} in the ptxas log:\n{log}")
        return int(found.group(1))

    return PtxasUsage(
        registers=number(r"Used (\d+) registers"),
        spill_stores=number(r"(\d+) bytes spill stores"),
        spill_loads=number(r"(\d+) bytes spill loads"),
        shared=compiled.metadata.shared,
    )


# The widest shapes the kernels take (qk = C / 8 at C = 512, the backend's
# limit; a full value slice; full channel chunks): the most register pressure.
WIDEST = dict(QK_PAD=64, BLOCK_V=MAX_BLOCK_V)


def _fwd_constants(**flags) -> dict:
    return dict(**flags, **WIDEST, BLOCK_C=MAX_BLOCK_C, INPUT_PRECISION="ieee")


# Epilogue variants of the forward: SAGAN (bias, y = gamma o + x), BigGAN
# (no bias, fused Wo), and v split across programs (Wo applied after).
FWD_VARIANTS = {
    "sagan": _fwd_constants(HAS_BQ=True, WRITE_Y=True, OUT_PROJ=False, HAS_BO=False),
    "out_proj": _fwd_constants(HAS_BQ=False, WRITE_Y=True, OUT_PROJ=True, HAS_BO=True),
    "split_v": _fwd_constants(HAS_BQ=True, WRITE_Y=False, OUT_PROJ=False, HAS_BO=False),
}


def _bwd_constants(**flags) -> dict:
    return dict(**flags, **WIDEST, INPUT_PRECISION="ieee")


# The backward with all of v in one slice, and split (dV-only launch included).
DKDV_VARIANTS = {
    "dk+dv": _bwd_constants(COMPUTE_DK=True, COMPUTE_DV=True, SPLIT_V=False),
    "dk,split_v": _bwd_constants(COMPUTE_DK=True, COMPUTE_DV=False, SPLIT_V=True),
    "dv,split_v": _bwd_constants(COMPUTE_DK=False, COMPUTE_DV=True, SPLIT_V=True),
}
DQ_VARIANTS = {
    "dq": _bwd_constants(SPLIT_V=False),
    "dq,split_v": _bwd_constants(SPLIT_V=True),
}


def variants(dtypes=DTYPES) -> list[Variant]:
    """Every autotune config of every kernel, for each dtype, general and aligned.

    Args:
        dtypes: Triton dtype names ("fp32", "bf16", "fp16").
    """
    groups = [
        (attention_fwd.ATTN_FWD, "fwd", FWD_VARIANTS),
        (attention_bwd.ATTN_BWD_DKDV, "bwd_dkdv", DKDV_VARIANTS),
        (attention_bwd.ATTN_BWD_DQ, "bwd_dq", DQ_VARIANTS),
    ]
    return [
        Variant(f"{kernel}[{name}]", tuned.fn, config, dtype, constants, aligned)
        for tuned, kernel, named in groups
        for name, constants in named.items()
        for dtype in dtypes
        for config in tuned.configs[dtype_family(dtype)]
        for aligned in (False, True)
    ]
