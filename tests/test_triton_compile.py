"""Every Triton kernel compiles for sm_80 and sm_90, with no GPU, and does not spill.

``triton.compile(ASTSource(...), target=GPUTarget("cuda", cap, 32))`` runs the
full pipeline down to a cubin (the triton wheel ships ptxas), so this catches
what the interpreter accepts but the GPU compiler rejects; ``ptxas -v`` on the
PTX gives registers and spills (kernels/aot.py).

Each variant is compiled twice: general (no divisibility hints: ragged N,
odd C) and aligned (every integer divisible by 16, as Triton specialises for
N = 4096, C = 64: vector loads, cp.async pipelining): different code, both
must not spill.

Budget on a 2-core CPU (measured): 1 to 6 s per compilation, 10 to 30 s for
one that spills. The default suite compiles the full matrix: every autotune
configuration of every kernel and constexpr variant, for fp32, bf16 and fp16,
for sm_80 and sm_90 (320 compilations, about 10 min with an empty Triton
cache; the same table as benchmarks/TRITON_REPORT.md). ``-m slow`` adds the
fp32 configurations with TF32 dots (64 more, about 3 min).
"""

from __future__ import annotations

import dataclasses
import os

import pytest

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip(
        "TRITON_INTERPRET=1 turns @triton.jit functions into interpreter functions, "
        "which cannot be compiled", allow_module_level=True,
    )

from sacolor.kernels import aot  # noqa: E402  (after the interpreter check)


def _compile_without_spills(variant: aot.Variant, capability: int) -> None:
    compiled = aot.compile_variant(variant, capability)
    assert compiled.asm["cubin"], "no cubin produced"
    usage = aot.ptxas_usage(compiled, capability)
    assert usage.spill_stores == 0 and usage.spill_loads == 0, (
        f"{variant.describe()} on sm_{capability} spills: {usage}"
    )


@pytest.mark.parametrize("capability", aot.CAPABILITIES, ids=lambda c: f"sm{c}")
@pytest.mark.parametrize("variant", aot.variants(), ids=aot.Variant.describe)
def test_every_config_compiles(variant: aot.Variant, capability: int) -> None:
    _compile_without_spills(variant, capability)


@pytest.mark.slow
@pytest.mark.parametrize("capability", aot.CAPABILITIES, ids=lambda c: f"sm{c}")
@pytest.mark.parametrize("variant", aot.variants(("fp32",)), ids=aot.Variant.describe)
def test_tf32_configs_compile(variant: aot.Variant, capability: int) -> None:
    """fp32 inputs with torch.backends.cuda.matmul.allow_tf32: tensor-core dots."""
    tf32 = dataclasses.replace(variant, constants={**variant.constants, "INPUT_PRECISION": "tf32"})
    _compile_without_spills(tf32, capability)
