"""Generators and discriminators: shapes, attention placement, options, errors, memory."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import sacolor
from sacolor.attention.module import SelfAttention
from sacolor.models import UNET_DEPTHS, build_discriminator, build_generator


def attention_channels(module: nn.Module) -> list[int]:
    return [m.in_channels for m in module.modules() if isinstance(m, SelfAttention)]


@pytest.mark.parametrize("name, depth", sorted(UNET_DEPTHS.items()))
def test_generator_shapes_and_range(name, depth):
    side = 2**depth
    g = build_generator(name, ngf=4, input_size=(side, 2 * side)).eval()
    out = g(torch.randn(2, 1, side, 2 * side))
    assert out.shape == (2, 2, side, 2 * side)
    assert out.abs().max() <= 1


def test_attention_goes_where_the_sizes_say():
    g = build_generator("unet_128", ngf=8, sa_sizes=(64, 32))
    assert sorted(attention_channels(g)) == [8, 16]  # level 1: ngf channels; level 2: 2 * ngf
    full = build_generator("unet_128", ngf=8, sa_sizes=(128,))
    assert attention_channels(full) == [8]
    out = full(torch.randn(1, 1, 128, 128))
    assert out.shape == (1, 2, 128, 128)
    # Non-square: a size names the shorter side, so 128 on 256x512 is the 128x256 map.
    film = build_generator("unet_256", ngf=4, sa_sizes=(128,), input_size=(256, 512))
    assert attention_channels(film) == [4]
    d = build_discriminator(ndf=8, sa_sizes=(32,))
    assert attention_channels(d) == [16]


def test_attention_changes_output_once_gamma_is_set():
    g = build_generator("unet_64", ngf=4, sa_sizes=(16,), input_size=(64, 64)).eval()
    x = torch.randn(1, 1, 64, 64)
    before = g(x)
    attn = next(m for m in g.modules() if isinstance(m, SelfAttention))
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    assert not torch.allclose(before, g(x))


def test_options_norm_dropout_spectral_norm():
    g = build_generator("unet_128", ngf=4, norm="instance", dropout=True, spectral_norm=True, sa_sizes=(32,))
    assert any(isinstance(m, nn.InstanceNorm2d) for m in g.modules())
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == 2  # the two 8*ngf middle stages
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    x = torch.randn(2, 1, 128, 128)
    g.train()
    assert not torch.equal(g(x), g(x))  # dropout and spectral-norm power iterations
    g.eval()
    torch.testing.assert_close(g(x), g(x), rtol=0, atol=0)  # dropout is off at inference
    plain = build_generator("unet_128", ngf=4, norm="none")
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in plain.modules())


def test_discriminator_patch_logits():
    d = build_discriminator(ndf=8, n_layers=3, spectral_norm=True, norm="none")
    assert d(torch.randn(2, 3, 128, 128)).shape == (2, 1, 14, 14)  # pix2pix's 70x70 PatchGAN
    assert build_discriminator(ndf=8, n_layers=2)(torch.randn(1, 3, 64, 128)).shape == (1, 1, 14, 30)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown generator 'unet_32'"):
        build_generator("unet_32")
    with pytest.raises(ValueError, match="not divisible by 128, which unet_128 needs"):
        build_generator("unet_128", input_size=(96, 128))
    with pytest.raises(ValueError, match="no feature map of size 48.*choose from \\[128, 64"):
        build_generator("unet_128", sa_sizes=(48,))
    with pytest.raises(ValueError, match="norm must be one of"):
        build_generator("unet_128", norm="group")
    with pytest.raises(ValueError, match="discriminator has no feature map"):
        build_discriminator(sa_sizes=(128,))
    g = build_generator("unet_64", ngf=4, input_size=64)
    with pytest.raises(ValueError, match="not divisible by 2\\*\\*depth = 64"):
        g(torch.randn(1, 1, 64, 96))


# Peak memory of generator forward + backward with attention on a large map, in a fresh process
# (ru_maxrss is per process). The N x N score matrix alone would be 4 * N**2 bytes.
MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys, torch
    from sacolor.models import build_generator
    name, height, width, sa, backend = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

    def peak_after_step(sa_sizes):
        torch.manual_seed(0)
        g = build_generator(name, ngf=4, sa_sizes=sa_sizes, input_size=(height, width), attention_backend=backend)
        for m in g.modules():
            if hasattr(m, "gamma"):
                m.gamma.data.fill_(0.5)  # gamma = 0 would let the op skip attention
        g(torch.randn(1, 1, height, width)).square().mean().backward()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    peak_after_step((sa // 8,))  # warm up allocators, thread pools and the attention kernel
    baseline = peak_after_step(())
    print(json.dumps({"extra_bytes": peak_after_step((sa,)) - baseline}))
""")


def run_memory_probe(name: str, height: int, width: int, sa: int, backend: str = "cpu") -> int:
    """Extra peak RSS of fwd + bwd with attention at ``sa`` over the same net without it."""
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, name, str(height), str(width), str(sa), backend],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["extra_bytes"]


needs_cpu_kernel = pytest.mark.skipif(
    "cpu" not in sacolor.available_backends(), reason="the fused cpu backend (sacolor._C) is not built"
)


@needs_cpu_kernel
def test_generator_attention_memory_is_not_quadratic_small():
    # SA at 64x128 of a 128x256 input: N = 8192, one fp32 score matrix would be 256 MiB
    # (the reference backend adds about 1 GiB here).
    n = 64 * 128
    assert run_memory_probe("unet_128", 128, 256, 64) < 4 * n * n / 8


@pytest.mark.slow
@needs_cpu_kernel
def test_generator_attention_memory_at_film_size():
    # SA at 128x256 of a 256x512 frame: N = 32768, one fp32 score matrix would be 4 GiB.
    n = 128 * 256
    assert run_memory_probe("unet_256", 256, 512, 128) < 4 * n * n / 64
