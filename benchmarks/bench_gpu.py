"""GPU benchmark of the ``triton`` backend against PyTorch, next to the H100 floor.

    python -m benchmarks.bench_gpu [--dtype bf16] [--channels 64,256,512] [--sizes 64x64,128x128,256x512]

For each (C, H x W) in the SAGAN layout (qk = C/8, v = C, bias, gamma = 0.7,
batch 1) it times, with ``triton.testing.do_bench`` (median ms):

- ``triton`` forward, and forward + backward (the fused kernels);
- ``sdpa``: the same attention written with 1x1 convs and
  ``torch.nn.functional.scaled_dot_product_attention`` (PyTorch's own
  flash / memory-efficient kernels), forward and forward + backward;
- ``reference`` (O(N^2) PyTorch) where its N x N matrix fits (N <= 16 384);

and prints one JSON object per case, with the forward floor from
benchmarks/FLOOR_H100.md and measured / floor. Without a CUDA device it says
so and exits 0. ``pytest benchmarks/bench_gpu.py`` runs the same cases under
pytest-benchmark (skipped without CUDA).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import sacolor

# Forward floor in microseconds on an H100 SXM5 for the SAGAN layout, bf16,
# B = 1, BLOCK_M = 128 (the shipped default): benchmarks/FLOOR_H100.md,
# instruction issue at C = 64, L2 -> SM at C = 256 and 512.
FLOOR_H100_US = {
    (64, 4096): 5.59, (64, 16384): 89.4, (64, 131072): 5720.0,
    (256, 4096): 15.3, (256, 16384): 244.0, (256, 131072): 15600.0,
    (512, 4096): 36.6, (512, 16384): 586.0, (512, 131072): 37500.0,
}
REFERENCE_MAX_N = 16384
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_case(channels: int, height: int, width: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """SAGAN-layout tensors on the GPU, all requiring grad."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    qk = max(1, channels // 8)

    def rand(*shape, std):
        return (torch.randn(*shape, generator=gen, device="cuda") * std).to(dtype).requires_grad_()

    return {
        "x": rand(1, channels, height, width, std=1.0),
        "wq": rand(qk, channels, std=channels ** -0.5), "bq": rand(qk, std=0.1),
        "wk": rand(qk, channels, std=channels ** -0.5), "bk": rand(qk, std=0.1),
        "wv": rand(channels, channels, std=channels ** -0.5), "bv": rand(channels, std=0.1),
        "gamma": torch.full((1,), 0.7, device="cuda", dtype=dtype, requires_grad=True),
    }


def fused(t: dict, backend: str) -> torch.Tensor:
    return sacolor.self_attention(
        t["x"], t["wq"], t["wk"], t["wv"], t["gamma"], bq=t["bq"], bk=t["bk"], bv=t["bv"], backend=backend
    )


def sdpa(t: dict) -> torch.Tensor:
    """SAGAN attention as PyTorch code writes it: 1x1 convs, then SDPA with scale 1."""
    x = t["x"]
    batch, channels, height, width = x.shape
    q, k, v = (F.conv2d(x, t[f"w{n}"][:, :, None, None], t[f"b{n}"]) for n in "qkv")
    q, k, v = (z.flatten(2).transpose(1, 2).unsqueeze(1) for z in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v, scale=1.0)
    return t["gamma"] * o.squeeze(1).transpose(1, 2).reshape(batch, channels, height, width) + x


def _forward_backward(run: Callable[[dict], torch.Tensor], t: dict) -> Callable[[], None]:
    def step() -> None:
        y = run(t)
        y.backward(torch.ones_like(y))

    return step


def _forward(run: Callable[[dict], torch.Tensor], t: dict) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            run(t)

    return step


def runners(n: int) -> dict[str, Callable[[dict], torch.Tensor]]:
    out = {"triton": lambda t: fused(t, "triton"), "sdpa": sdpa}
    if n <= REFERENCE_MAX_N:
        out["reference"] = lambda t: fused(t, "reference")
    return out


def bench_case(channels: int, height: int, width: int, dtype: torch.dtype) -> dict:
    """Median milliseconds of every runner, forward and forward + backward."""
    from triton.testing import do_bench

    n = height * width
    t = make_case(channels, height, width, dtype)
    result = {"C": channels, "H": height, "W": width, "N": n, "dtype": str(dtype).removeprefix("torch.")}
    for name, run in runners(n).items():
        result[f"{name}_fwd_ms"] = do_bench(_forward(run, t))
        result[f"{name}_fwd_bwd_ms"] = do_bench(_forward_backward(run, t))
    floor_us = FLOOR_H100_US.get((channels, n))
    if floor_us is not None:
        result["floor_h100_fwd_ms"] = floor_us / 1000
        result["triton_fwd_over_floor"] = result["triton_fwd_ms"] / (floor_us / 1000)
    return result


def _sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(d) for d in size.split("x")) for size in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--channels", default="64,256,512", help="comma-separated C values")
    parser.add_argument("--sizes", default="64x64,128x128,256x512", help="comma-separated HxW feature maps")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; nothing to measure", file=sys.stderr)
        return 0
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}))
    for channels in (int(c) for c in args.channels.split(",")):
        for height, width in _sizes(args.sizes):
            print(json.dumps(bench_case(channels, height, width, DTYPES[args.dtype])), flush=True)
    return 0


# -- pytest-benchmark entry points ---------------------------------------------

PYTEST_CASES = [(64, 64, 64), (64, 128, 128), (256, 128, 128)]


@pytest.fixture
def cuda_case(request):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("triton")
    channels, height, width = request.param
    return make_case(channels, height, width, torch.bfloat16)


@pytest.mark.parametrize("cuda_case", PYTEST_CASES, indirect=True, ids=lambda c: f"C{c[0]}-{c[1]}x{c[2]}")
@pytest.mark.parametrize("name", ["triton", "sdpa"])
def test_forward_backward(benchmark, cuda_case, name: str) -> None:
    run = runners(0)[name]
    step = _forward_backward(run, cuda_case)

    def synchronised() -> None:
        step()
        torch.cuda.synchronize()

    benchmark(synchronised)


if __name__ == "__main__":
    sys.exit(main())
