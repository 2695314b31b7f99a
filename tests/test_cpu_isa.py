"""No AVX instruction outside the AVX2 tile kernels of the built extension.

The dispatcher calls the AVX2 kernels only after __builtin_cpu_supports says
the CPU has AVX2 and FMA; everything else must run on a baseline x86-64 CPU.
A torch or standard-library inline function compiled inside tiles_avx2.cpp
and picked by the linker for the whole library would break that without any
test on this (AVX2) machine noticing, so the binary itself is checked: every
function holding a VEX-encoded instruction (mnemonic v..., ymm/zmm
registers) must be one of the AVX2 unit's own."""

import platform
import re
import shutil
import subprocess

import pytest

import sacolor._C

FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
VEX = re.compile(r"\tv[a-z0-9]+\s|%[yz]mm")

pytestmark = [
    pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 only"),
    pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)"),
]


def _functions_with_vex_instructions() -> set[str]:
    listing = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", sacolor._C.__file__],
                             check=True, capture_output=True, text=True).stdout
    found, function = set(), None
    for line in listing.splitlines():
        header = FUNCTION.match(line)
        if header:
            function = header.group(1)
        elif function and VEX.search(line):
            found.add(function)
    return found


def test_avx_instructions_only_in_the_avx2_kernels():
    functions = _functions_with_vex_instructions()
    # The AVX2 kernels are there (the check below would pass vacuously otherwise).
    assert any("sacolor::cpu::avx2::forward_block" in f for f in functions)
    assert any("sacolor::cpu::avx2::backward_block" in f for f in functions)
    outside = sorted(f for f in functions if "avx2" not in f.lower())
    assert not outside, f"AVX instructions outside the AVX2 unit: {outside[:5]}"
