"""The launches real calls make compile for sm_80 and sm_90, with no GPU, and the
code the compiler made does what the kernels intend.

``benchmarks/aot.py`` records the launches of one forward and backward of each
shape in ``aot.SHAPES`` (SAGAN at C = 64 with qk = 8, the BigGAN layout,
ragged N, C = 256 and 512 with v split across programs) on meta tensors, in
fp32, TF32, bf16 and fp16, and specialises them with Triton's own binder, so
what is compiled is what a GPU run compiles. For every autotune configuration
of every launch, on sm_80 and sm_90:

- ``ptxas -v``: no register spills;
- SASS (``cuobjdump -sass``), in the loop that computes the exponentials:
  MUFU.EX2 x threads at most 1.1 x BLOCK_M x BLOCK_N per iteration, i.e. no
  warp computes scores another warp also computes (the per-row rescale exps
  fit in the 10 %); and no 1- or 2-byte global loads (scalar 16-bit K, q or
  V: the loads must be vectors). The fp32 IEEE family runs its dots on the
  FMA units, qk + v FMAs per score, so exps are not its bound; its blocked
  layout spreads a row over few threads and the rescale exps add up to 50 %:
  its bound is 1.5 (a duplicated tile would be 2 or more);
- TTIR: the batch program id is widened to i64 before any multiply, so
  batch offsets past 2**31 elements do not wrap.

Budget on a 2-core CPU: 1 to 3 s per compilation, about 280 compilations:
about 10 minutes with an empty Triton cache.
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

import triton  # noqa: E402

from benchmarks import aot  # noqa: E402  (after the interpreter check)

# Largest MUFU.EX2 x threads per BLOCK_M x BLOCK_N scores of one iteration.
EXP2_BOUND = {"16bit": 1.1, "tf32": 1.1, "fp32": 1.5}
VARIANTS = aot.variants()


def _exp2_ratio(variant: aot.Variant, stats: aot.SassStats) -> float:
    c = variant.config
    return stats.exp2_per_thread * variant.threads / (c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])


@pytest.mark.parametrize("capability", aot.CAPABILITIES, ids=lambda c: f"sm{c}")
@pytest.mark.parametrize("variant", VARIANTS, ids=aot.Variant.describe)
def test_real_launch_compiles_to_the_intended_code(variant: aot.Variant, capability: int) -> None:
    compiled = aot.compile_variant(variant, capability)
    usage = aot.ptxas_usage(compiled, capability)
    assert usage.spill_stores == 0 and usage.spill_loads == 0, f"spills: {usage}"
    stats = aot.sass_stats(compiled)
    bound = EXP2_BOUND[variant.launch.family]
    assert _exp2_ratio(variant, stats) <= bound, f"duplicated exponentials: {stats}"
    if variant.precision in ("bf16", "fp16"):
        assert stats.narrow_loads == 0, f"scalar 16-bit loads in the main loop: {stats}"
    assert aot.batch_offset_is_64_bit(compiled), "the batch program id is multiplied in 32 bits"


def test_the_exponential_check_catches_duplicated_scores() -> None:
    """A control: BLOCK_M = 64 with 8 warps lays the score tile out over two warp
    groups that both compute it (2x the MUFU.EX2), which the check must reject."""
    shipped = next(v for v in VARIANTS if v.shape == "sagan_c64" and v.precision == "bf16")
    duplicating = dataclasses.replace(
        shipped, config=triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=8, num_stages=2)
    )
    stats = aot.sass_stats(aot.compile_variant(duplicating, 90))
    assert _exp2_ratio(duplicating, stats) > 1.5 * EXP2_BOUND["16bit"]


def test_sagan_launch_specialises_qk_8_as_a_constant() -> None:
    """The real SAGAN call (C = 64, qk = 8) compiles qk as a constant, with padded,
    16-aligned key rows: what lets its loads be vectors."""
    launch = next(v.launch for v in VARIANTS if v.shape == "sagan_c64" and v.precision == "bf16")
    assert launch.constexprs["QK"] == 8 and launch.constexprs["QK_PAD"] == 16
    k = launch.args[3]
    assert k.shape[-1] == 8 and k.stride(1) % 16 == 0
