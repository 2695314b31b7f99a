"""Peak memory of one forward + backward of ``SelfAttention`` (the O(N) claim).

``python -m benchmarks.memory`` runs the acceptance case: ``SelfAttention(64)``
on 1x64x256x512 (N = 131 072; the N x N score matrix alone would be 64 GiB)
with the cpu backend, in a fresh subprocess, and prints its peak resident set
size. The measurement reads the kernel's own counters (/proc/self/status,
VmHWM), so it sees every allocation, ATen's and OpenMP's included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

GIB = 1 << 30
MIB = 1 << 20
REPO_ROOT = Path(__file__).resolve().parent.parent


def status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM, ...) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_growth(fn) -> int:
    """Bytes the resident set grew to at its peak while ``fn()`` ran.

    Exact where the kernel lets us reset the peak (Linux >= 4.0); otherwise
    only growth beyond the process's earlier peak is seen.
    """
    before = status_bytes("VmRSS") if reset_peak() else status_bytes("VmHWM")
    fn()
    return max(0, status_bytes("VmHWM") - before)


def measure(channels: int, height: int, width: int, backend: str, batch: int = 1, dtype: str = "float32") -> dict:
    """Peak RSS of one forward + backward in *this* process; call in a fresh one.

    Returns:
        dict with peak_bytes (whole process), growth_bytes (peak during the
        step minus RSS before it) and the case.
    """
    import torch

    import sacolor

    torch.manual_seed(0)
    module = sacolor.SelfAttention(channels, backend=backend).to(getattr(torch, dtype))
    with torch.no_grad():
        module.gamma.fill_(0.7)
    x = torch.randn(batch, channels, height, width, dtype=getattr(torch, dtype), requires_grad=True)
    growth = peak_growth(lambda: module(x).sum().backward())
    return {
        "case": f"SelfAttention({channels}) on {batch}x{channels}x{height}x{width} {dtype}, backend {backend}",
        "peak_bytes": status_bytes("VmHWM"),
        "growth_bytes": growth,
        "threads": torch.get_num_threads(),
    }


def measure_in_subprocess(
    channels: int, height: int, width: int, backend: str, batch: int = 1, dtype: str = "float32"
) -> dict:
    """``measure`` in a fresh Python process, so earlier allocations do not count."""
    command = [
        sys.executable, "-m", "benchmarks.memory", "--child", "--channels", str(channels),
        "--height", str(height), "--width", str(width), "--backend", backend, "--batch", str(batch),
        "--dtype", dtype,
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--limit-gib", type=float, default=2.0, help="fail above this peak RSS")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.channels, args.height, args.width, args.backend, args.batch, args.dtype)))
        return 0
    result = measure_in_subprocess(args.channels, args.height, args.width, args.backend, args.batch, args.dtype)
    peak, growth = result["peak_bytes"], result["growth_bytes"]
    print(f"{result['case']}, {result['threads']} threads: forward + backward")
    print(f"  peak RSS   {peak / GIB:.2f} GiB ({peak / MIB:.0f} MiB)")
    print(f"  step growth {growth / GIB:.2f} GiB ({growth / MIB:.0f} MiB)")
    ok = peak < args.limit_gib * GIB
    print(f"  {'within' if ok else 'OVER'} the {args.limit_gib:g} GiB limit")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
