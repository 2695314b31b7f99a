"""Every GPU check and benchmark in one command, for the day a GPU is lent.

    python -m benchmarks.gpu_check [--output gpu_report.md]

Run from the root of a checkout on a machine with a CUDA GPU, torch and
Triton (tested against Python 3.11-3.12, torch 2.11-2.13, Triton 3.6-3.9). It
needs nothing else: no install, no C++ build. sacolor is imported from the
checkout through a temporary package tree that maps ``sacolor.kernels`` to
``kernels/`` as an install does (the C++ CPU kernel is not needed on a GPU;
the reference backend is the oracle). Autotuning is off, so every kernel
compiles once per shape; the whole run takes about 4 minutes on an H100 and
stops its parts at ``BUDGET_S`` (8 minutes) in all.

It writes one markdown report (stdout, and ``--output``):

1. environment: GPU, driver, CUDA, Python, torch, Triton;
2. ``tests/test_gpu.py``: every GPU test against the float64 reference and
   SDPA, with each failure's message;
3. shipped against alternative kernel configurations, bf16, B = 1,
   N = 16 384 (128 x 128), C = 64 and 256 (SAGAN layout): the forward and
   the dK/dV kernel, median time and its ratio to the H100 floor of
   benchmarks/FLOOR_H100.md;
4. the batch-offset case: B x C x N past 2**31 elements (y and dx of
   batches 0, the middle one and the last against single-image runs).

Exits 1 if a test fails or the batch-offset case disagrees.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 480
TESTS_TIMEOUT_S = 300
# Floor of one kernel at N = 16 384, bf16, B = 1 on an H100 SXM5, in microseconds
# (benchmarks/FLOOR_H100.md, "The floor of each kernel at N = 16 384").
FLOOR_H100_US = {("fwd", 64): 89.4, ("fwd", 256): 244.0, ("dkdv", 64): 116.0, ("dkdv", 256): 445.0}
# Configurations to time next to the shipped ones: what shipped before the SASS
# review (the 8-warp 64-row forward tiles duplicate the score exps).
ALTERNATIVES = {
    "fwd": [(64, 64, 8, 2), (64, 32, 8, 2), (32, 64, 4, 2), (128, 64, 8, 2)],
    "dkdv": [(16, 64, 4, 2), (32, 32, 4, 2), (16, 32, 4, 2), (32, 32, 4, 3)],
}


def package_tree(root: Path) -> Path:
    """A directory whose ``sacolor`` package is the checkout's, with ``kernels/`` as
    ``sacolor.kernels`` (symlinks, as pyproject.toml's package-dir maps it)."""
    package = root / "sacolor"
    package.mkdir()
    for entry in (REPO_ROOT / "sacolor").iterdir():
        (package / entry.name).symlink_to(entry)
    (package / "kernels").symlink_to(REPO_ROOT / "kernels")
    return root


def environment() -> list[str]:
    import torch
    import triton

    lines = [
        f"- GPU: {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}), "
        f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB",
        f"- Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"Triton {triton.__version__}",
    ]
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
        capture_output=True, text=True, check=False,
    )
    if smi.returncode == 0:
        lines.append(f"- driver, max SM clock: {smi.stdout.strip()}")
    return lines


def gpu_tests(tree: Path, timeout_s: float) -> tuple[list[str], bool]:
    """tests/test_gpu.py in a fresh Python, summarised from its JUnit report; and whether all passed."""
    junit = tree / "junit.xml"
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_gpu.py", "-q", "-p", "no:cacheprovider",
             f"--junitxml={junit}"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return [f"- timed out after {timeout_s:.0f} s"], False
    if not junit.exists():
        return ["- no report:", "```", proc.stdout[-3000:], proc.stderr[-3000:], "```"], False
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failures = []
    for case in ET.parse(junit).iter("testcase"):
        node = next((case.find(tag) for tag in ("failure", "error") if case.find(tag) is not None), None)
        if node is not None:
            counts["failed"] += 1
            message = (node.get("message") or "no message").splitlines()[0][:300]
            failures.append(f"- `{case.get('name')}`: {message}")
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    ok = counts["failed"] == 0 and counts["passed"] > 0
    return [f"{summary} in {time.perf_counter() - start:.0f} s", *failures], ok


def _sagan_inputs(channels: int, side: int, batch: int = 1):
    import torch

    from sacolor.attention.inputs import AttentionInputs

    gen = torch.Generator(device="cuda").manual_seed(0)
    qk = channels // 8

    def rand(*shape, std):
        return (torch.randn(*shape, generator=gen, device="cuda") * std).to(torch.bfloat16)

    return AttentionInputs.create(
        rand(batch, channels, side, side, std=1.0), rand(qk, channels, std=channels**-0.5), rand(qk, std=0.1),
        rand(qk, channels, std=channels**-0.5), rand(qk, std=0.1), rand(channels, channels, std=channels**-0.5),
        rand(channels, std=0.1), None, None, torch.full((1,), 0.7, device="cuda", dtype=torch.bfloat16),
    )


def config_table(deadline: float) -> list[str]:
    """Forward and dK/dV kernel times per configuration at N = 16 384."""
    import torch
    from triton.runtime.errors import OutOfResources

    from sacolor.attention.backends.triton import TritonBackend
    from sacolor.kernels.common import configs, recording_launches

    backend = TritonBackend()
    rows = ["| kernel | C | BLOCK_M | BLOCK_N | warps | stages | shipped | ms | x floor |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for channels in (64, 256):
        inputs = _sagan_inputs(channels, 128)
        result = backend.forward(inputs)
        with recording_launches() as forward:
            backend.forward(inputs)
        with recording_launches() as backward:
            backend.backward(inputs, torch.randn_like(inputs.x), result.o, result.lse, result.q)
        for kind, launch in (("fwd", forward[0]), ("dkdv", backward[0])):
            shipped = launch.kernel.configs[launch.family]
            names = {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in shipped}
            for config in shipped + configs([r for r in ALTERNATIVES[kind] if r not in names]):
                if time.perf_counter() > deadline:
                    return [*rows, "", "(stopped: time budget spent)"]
                row = (config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.num_warps, config.num_stages)
                try:
                    ms = launch.kernel.time(launch, config)
                except OutOfResources as err:
                    rows.append(f"| {kind} | {channels} | {' | '.join(map(str, row))} | no | out of resources: {err} | |")
                    continue
                ratio = ms * 1000 / FLOOR_H100_US[(kind, channels)]
                rows.append(
                    f"| {kind} | {channels} | {' | '.join(map(str, row))} | {'yes' if row in names else 'no'} "
                    f"| {ms:.4f} | {ratio:.2f} |"
                )
    return rows


def batch_offsets_past_2_31() -> tuple[list[str], bool]:
    """One call with B x C x N > 2**31 against single-image calls of the same images.

    Not bit for bit: the key/value GEMM may pick another cuBLAS algorithm for
    another batch size. A wrapped batch offset reads another image (or crashes).
    """
    import torch

    import sacolor

    channels, side = 64, 256  # C x N = 4.2 M elements per image
    batch = 2**31 // (channels * side * side) + 1
    try:
        inputs = _sagan_inputs(channels, side, batch)
        x = inputs.x.requires_grad_()
        w = {name: t for name, t in inputs.named_tensors().items() if t is not None and name != "x"}

        def attend(z):
            return sacolor.self_attention(z, w["wq"], w["wk"], w["wv"], w["gamma"], bq=w["bq"], bk=w["bk"],
                                          bv=w["bv"], backend="triton")

        y = attend(x)
        dy = torch.randn_like(y)
        (dx,) = torch.autograd.grad(y, x, dy)
        lines = [f"B = {batch}, C = {channels}, N = {side * side}: B x C x N = {batch * channels * side * side:,}"]
        ok = True
        for b in (0, batch // 2, batch - 1):
            one = x[b:b + 1].detach().requires_grad_()
            y_one = attend(one)
            (dx_one,) = torch.autograd.grad(y_one, one, dy[b:b + 1])
            errors = [(got.float() - want.float()).abs().max().item() for got, want in
                      ((y[b:b + 1], y_one), (dx[b:b + 1], dx_one))]
            same = max(errors) <= 0.05  # bf16 rounding of O(1) values; a wrong image is O(1) off
            ok &= same
            lines.append(f"- batch {b}: max |difference| y {errors[0]:.3g}, dx {errors[1]:.3g} against a "
                         f"single-image call: {'ok' if same else 'WRONG'}")
        return lines, ok
    except torch.cuda.OutOfMemoryError as err:
        return [f"- skipped: out of memory ({str(err).splitlines()[0]})"], True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="also write the report to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    os.environ["SACOLOR_TRITON_AUTOTUNE"] = "0"  # one compilation per shape; the table times configs itself
    with tempfile.TemporaryDirectory() as tmp:
        tree = package_tree(Path(tmp))
        sys.path.insert(0, str(tree))
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device; nothing to check", file=sys.stderr)
            return 1
        tests, tests_ok = gpu_tests(tree, min(TESTS_TIMEOUT_S, BUDGET_S / 2))
        report = ["# sacolor GPU check", "", "## Environment", *environment()]
        report += ["", "## tests/test_gpu.py", *tests]
        report += ["", "## Kernel configurations, bf16, N = 16 384", *config_table(start + BUDGET_S - 60)]
        offsets, offsets_ok = batch_offsets_past_2_31()
        report += ["", "## Batch offsets past 2**31 elements", *offsets]
    report += ["", f"Total {time.perf_counter() - start:.0f} s."]
    text = "\n".join(report)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0 if tests_ok and offsets_ok else 1


if __name__ == "__main__":
    sys.exit(main())
