"""Each instruction set stays inside the units compiled for it, in the built extension.

The dispatcher (csrc/cpu/isa.cpp) calls a unit's kernels only after cpuid and
XCR0 say the CPU and OS run them; everything else must run on a baseline
x86-64 CPU, and the AVX2 kernels on an AVX2 CPU without AVX-512 (CI may be a
Zen 3). A torch or standard-library inline function compiled inside a SIMD
unit and picked by the linker for the whole library would break that without
any test on this machine noticing, so the binary itself is checked, by the
instructions' encodings: VEX (first opcode byte c4/c5: AVX, AVX2, AMX) and
EVEX (62: AVX-512)."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from functools import cache

import pytest

import sacolor._C

FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
# "  2ddf6:\t62 d1 7c 48 10 04 ab \tvmovups (%r11,%rbp,4),%zmm0"
INSTRUCTION = re.compile(r"^\s*[0-9a-f]+:\t((?:[0-9a-f]{2} )+)\s*\t(\S+)")
LEGACY_PREFIXES = {"26", "2e", "36", "3e", "64", "65", "67"}  # may precede a VEX/EVEX prefix
SIMD_UNITS = ("avx2", "avx512", "avx512bf16", "amx")  # namespaces sacolor::cpu::<unit>::

pytestmark = [
    pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 only"),
    pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)"),
]


@cache
def _encodings() -> dict[str, dict[str, set[str]]]:
    """function -> {"vex": mnemonics, "evex": mnemonics} for the VEX/EVEX instructions it holds."""
    listing = subprocess.run(["objdump", "-d", "-C", sacolor._C.__file__],
                             check=True, capture_output=True, text=True).stdout
    found: dict[str, dict[str, set[str]]] = {}
    function = None
    for line in listing.splitlines():
        header = FUNCTION.match(line)
        if header:
            function = header.group(1)
            continue
        insn = INSTRUCTION.match(line)
        if not (function and insn):
            continue
        opcode = next((b for b in insn.group(1).split() if b not in LEGACY_PREFIXES), "")
        kind = {"62": "evex", "c4": "vex", "c5": "vex"}.get(opcode)
        if kind:
            found.setdefault(function, {"vex": set(), "evex": set()})[kind].add(insn.group(2))
    return found


def _unit(function: str) -> str | None:
    match = re.search(r"sacolor::cpu::(\w+)::", function)
    return match.group(1) if match and match.group(1) in SIMD_UNITS else None


def test_no_vex_or_evex_instruction_outside_the_simd_units():
    outside = sorted(f for f in _encodings() if _unit(f) is None)
    assert not outside, f"AVX/AVX-512 instructions outside the SIMD units (generic code): {outside[:5]}"


def test_no_avx512_instruction_in_the_avx2_unit():
    evex = sorted(f for f, kinds in _encodings().items() if _unit(f) == "avx2" and kinds["evex"])
    assert not evex, f"EVEX (AVX-512) instructions in the AVX2 unit: {evex[:5]}"


@pytest.mark.parametrize("unit, kind, mnemonic", [
    ("avx2", "vex", "vfmadd231ps"),
    ("avx512", "evex", "vfmadd231ps"),
    ("avx512bf16", "evex", "vdpbf16ps"),
    ("amx", "vex", "tdpbf16ps"),
])
def test_each_unit_holds_its_kernels(unit, kind, mnemonic):
    # The checks above would pass vacuously if a unit compiled to nothing.
    kernels = {f: kinds for f, kinds in _encodings().items() if _unit(f) == unit}
    assert any("forward_block" in f for f in kernels) and any("backward_block" in f for f in kernels)
    assert any(mnemonic in kinds[kind] for kinds in kernels.values()), f"no {mnemonic} in the {unit} unit"
