"""Ahead-of-time compilation of the launches real calls make, with no GPU.

``recorded_launches`` runs ``TritonBackend``'s forward and backward on meta
tensors with every kernel launch recorded instead of run, so each launch
carries exactly the arguments and constexprs a real call passes (padded row
strides, qk = 8 with QK_PAD = 16, a split v, ...). ``compile_variant`` then
specialises them with Triton's own binder, as ``JITFunction.run`` does (ints
equal to 1 become constants, multiples of 16 get a divisibility hint, meta
tensors count as 16-byte aligned like CUDA allocations), and compiles for
``GPUTarget("cuda", cap, 32)``: TTIR, PTX and a cubin through the ptxas the
triton wheel ships. What the compiler made is then read back: ``ptxas -v``
for registers and spills, ``cuobjdump -sass`` for the instructions
(``SassStats``), and the TTIR for 32-bit batch offsets.

Uses Triton internals (the binder, ``_pack_args``, ``triton.knobs``): this
module is for the test suite and the report, which pin Triton >= 3.9; the
kernels themselves do not need it.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import sm_arch_from_capability
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

from sacolor.attention.backends.triton import TritonBackend
from sacolor.kernels.common import Launch, recording_launches
from tests.attention_cases import Case

CAPABILITIES = (80, 90)
WARP_SIZE = 32
# Config family name -> (input dtype, torch.backends.cuda.matmul.allow_tf32).
PRECISIONS = {
    "fp32": (torch.float32, False),
    "tf32": (torch.float32, True),
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
}


# The calls the compile tests check, by name: SAGAN at C = 64 (qk = 8: not a
# multiple of 16) on 64x64; the BigGAN layout (pool 2, v = C/2, fused Wo, no
# biases); ragged N (4095) with qk = 6; C = 256 on 128x128 (v split over two
# programs); and C = 512 (qk = 64, the widest query tile; v split in four).
SHAPES: dict[str, Case] = {
    "sagan_c64": Case(channels=64, qk=8, v=64, height=64, width=64, batch=2),
    "biggan_c256": Case(channels=256, qk=32, v=128, height=32, width=32, pool=2, out_proj=True, bias=False, batch=2),
    "ragged_c48": Case(channels=48, qk=6, v=48, height=63, width=65, batch=1),
    "sagan_c256": Case(channels=256, qk=32, v=256, height=128, width=128, batch=1),
    "sagan_c512": Case(channels=512, qk=64, v=512, height=32, width=32, batch=1),
}


@contextlib.contextmanager
def _tf32(allowed: bool):
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def recorded_launches(shape: Case, precision: str) -> list[Launch]:
    """Every kernel launch of one forward and backward of ``shape``, in order, not run."""
    dtype, tf32 = PRECISIONS[precision]
    inputs = shape.inputs(dtype, "meta")
    backend = TritonBackend()
    with recording_launches() as recorded, _tf32(tf32):
        result = backend.forward(inputs)
        backend.backward(inputs, torch.zeros_like(inputs.x), result.o, result.lse, result.q)
    return recorded


@dataclass(frozen=True)
class Variant:
    """One compilation: a recorded launch with one of its family's configurations."""

    shape: str
    precision: str
    launch: Launch
    config: triton.Config

    @property
    def threads(self) -> int:
        return self.config.num_warps * WARP_SIZE

    def describe(self) -> str:
        c, flags = self.config, self.launch.constexprs
        split = "-split_v" if flags.get("SPLIT_V") or (flags.get("WRITE_Y") is False) else ""
        part = ""
        if "COMPUTE_DK" in flags:
            part = "-" + "+".join(n for n, f in (("dk", flags["COMPUTE_DK"]), ("dv", flags["COMPUTE_DV"])) if f)
        return (
            f"{self.launch.kernel.fn.__name__}{part}{split}-{self.shape}-{self.precision}-"
            f"{c.kwargs['BLOCK_M']}x{c.kwargs['BLOCK_N']}w{c.num_warps}s{c.num_stages}"
        )


def variants(precisions=tuple(PRECISIONS), shapes=SHAPES) -> list[Variant]:
    """Each recorded launch of each shape (name -> Case) with every configuration of its family."""
    return [
        Variant(name, precision, launch, config)
        for name, shape in shapes.items()
        for precision in precisions
        for launch in recorded_launches(shape, precision)
        for config in launch.kernel.configs[launch.family]
    ]


def compile_variant(v: Variant, capability: int):
    """Compiles ``v`` for sm_<capability> as a launch would; returns Triton's CompiledKernel."""
    target = GPUTarget("cuda", capability, WARP_SIZE)
    backend = make_backend(target)
    fn = v.launch.kernel.fn
    kwargs = {
        **v.launch.constexprs, **v.config.kwargs,
        "num_warps": v.config.num_warps, "num_stages": v.config.num_stages,
        "enable_fp_fusion": True,  # the run-time default, stated (Triton 3.9 warns when implicit)
    }
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*v.launch.args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization, options)
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__)


@dataclass(frozen=True)
class PtxasUsage:
    registers: int
    spill_stores: int  # bytes
    spill_loads: int  # bytes
    shared: int  # bytes of shared memory the launch asks for (Triton's metadata)


def _nvidia_tool(name: str) -> str:
    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def ptxas_usage(compiled, capability: int) -> PtxasUsage:
    """Registers and spills from ``ptxas -v`` on the kernel's PTX, as Triton invokes it.

    Uses the wheel's ``ptxas-blackwell`` (it accepts the PTX Triton 3.9 emits)
    with Triton's own flags (--regAllocOptLevel=2 works around a ptxas 13 bug).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as ptx:
        ptx.write(compiled.asm["ptx"])
        ptx.flush()
        log = subprocess.run(
            [_nvidia_tool("ptxas-blackwell"), "-lineinfo", "-v", "--regAllocOptLevel=2",
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


def sass(compiled) -> list[tuple[int, str]]:
    """(address, instruction) of the kernel's SASS, from ``cuobjdump -sass`` on its cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        text = subprocess.run(
            [_nvidia_tool("cuobjdump"), "-sass", cubin.name], capture_output=True, text=True, check=True
        ).stdout
    return [
        (int(m.group(1), 16), m.group(2).strip())
        for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", text)
    ]


def _loop_bodies(instructions: list[tuple[int, str]]) -> list[list[str]]:
    """The instructions of each loop: from a backward branch's target to the branch."""
    bodies = []
    for address, text in instructions:
        branch = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", text)
        if branch and int(branch.group(1), 16) <= address:
            start = int(branch.group(1), 16)
            bodies.append([t for a, t in instructions if start <= a <= address])
    return bodies


@dataclass(frozen=True)
class SassStats:
    """What the main loop (the loop computing the exponentials) executes per iteration."""

    exp2_per_thread: int  # MUFU.EX2 in the main loop
    narrow_loads: int  # 1- and 2-byte global loads in the main loop (scalar 16-bit elements)


def sass_stats(compiled) -> SassStats:
    loops = [body for body in _loop_bodies(sass(compiled)) if any("MUFU.EX2" in t for t in body)]
    if not loops:
        raise RuntimeError("no loop with MUFU.EX2 in the SASS")
    main = min(loops, key=len)  # the innermost loop that computes exponentials
    return SassStats(
        exp2_per_thread=sum("MUFU.EX2" in t for t in main),
        narrow_loads=sum(bool(re.match(r"@?!?P?\w*\s*LDG\S*\.(U16|S16|U8|S8)\b", t)) for t in main),
    )


def batch_offset_is_64_bit(compiled) -> bool:
    """Whether the TTIR widens the batch program id (axis 1) to i64 before any use."""
    ttir = compiled.asm["ttir"]
    found = re.search(r"(%\S+) = tt.get_program_id y : i32", ttir)
    if found is None:
        raise RuntimeError("no tt.get_program_id y in the TTIR")
    pid = re.escape(found.group(1))
    uses = [line for line in ttir.splitlines() if re.search(pid + r"\b", line) and "get_program_id" not in line]
    return bool(uses) and all("arith.extsi" in line and ": i32 to i64" in line for line in uses)
