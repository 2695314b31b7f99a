"""Full-resolution colour transfer in strips: the same pixels as the whole-image
path, and a peak memory per pixel within ``BYTES_PER_PIXEL`` (issue 12, item 4)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from media import photo, tiny_checkpoint
from PIL import Image
from skimage import data

from sacolor.inference import photo as photo_module
from sacolor.inference.colorizer import Colorizer
from sacolor.inference.photo import BYTES_PER_PIXEL, colorize_photo


@pytest.fixture(scope="module")
def colorizer(tmp_path_factory):
    return Colorizer.from_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"), "cpu")


@pytest.mark.parametrize("height, width", [(97, 131), (64, 64), (17, 300)])
def test_strips_give_the_whole_image_result(colorizer, tmp_path, monkeypatch, height, width):
    monkeypatch.setattr(photo_module, "STRIP_PIXELS", 1000)  # many strips, ragged last one
    rgb = np.resize(photo("coffee", 300, 400), (height, width, 3))
    Image.fromarray(rgb).save(tmp_path / "in.png")
    strips = colorize_photo(colorizer, tmp_path / "in.png")
    whole = colorizer.colorize(rgb[None])[0]
    assert strips.shape == whole.shape and strips.dtype == np.uint8
    assert np.abs(strips.astype(int) - whole.astype(int)).max() <= 1


def test_an_animated_image_warns_that_only_its_first_frame_is_used(colorizer, tmp_path):
    frames = [Image.fromarray(photo("astronaut", 32, 48)), Image.fromarray(photo("coffee", 32, 48))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="anim.gif: has 2 frames; only the first is colourised"):
        assert colorize_photo(colorizer, tmp_path / "anim.gif").shape == (32, 48, 3)


def test_a_photo_larger_than_memory_is_refused_clearly(colorizer, tmp_path, monkeypatch):
    Image.fromarray(photo()).save(tmp_path / "in.png")
    monkeypatch.setattr(photo_module, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match=r"in.png: a 100x72 photo .* needs about .* GiB is available"):
        colorize_photo(colorizer, tmp_path / "in.png")


def test_one_call_colourises_a_file_an_image_or_an_array(tmp_path):
    # Issue 12, item 20: the documented one-line Python API, on the built-in model.
    import sacolor

    gray = np.asarray(Image.fromarray(photo("chelsea", 60, 90)).convert("L"))
    Image.fromarray(gray).save(tmp_path / "gray.png")
    from_file = sacolor.colorize(tmp_path / "gray.png", device="cpu")
    assert from_file.shape == (60, 90, 3) and from_file.dtype == np.uint8
    np.testing.assert_array_equal(sacolor.colorize(Image.fromarray(gray), device="cpu"), from_file)
    np.testing.assert_array_equal(sacolor.colorize(gray, device="cpu"), from_file)
    np.testing.assert_array_equal(sacolor.colorize(gray / 255.0, device="cpu"), from_file)
    with pytest.raises(ValueError, match="image must be gray"):
        sacolor.colorize(np.zeros((4, 4, 2), np.uint8))


# Colourises a small photo (so the model, torch's allocator and the libraries are
# warm), then the big one, through the sacolor-infer CLI; prints the peak RSS
# above the RSS after the warm-up, per pixel of the big photo.
MEASURE = """
import sys
from sacolor.cli.infer import main

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

small, big, out = sys.argv[1:4]
assert main([small, "-o", out + "/small.jpg", "--quiet", "--device", "cpu"]) == 0
base = status("VmRSS:")
assert main([big, "-o", out + "/big.jpg", "--quiet", "--device", "cpu"]) == 0
print((status("VmHWM:") - base) / float(sys.argv[4]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads peak RSS from /proc/self/status")
def test_peak_memory_of_a_6000x4000_photo_is_within_the_stated_bytes_per_pixel(tmp_path):
    height, width = 4000, 6000
    Image.fromarray(np.tile(data.astronaut(), (8, 12, 1))[:height, :width]).save(tmp_path / "big.jpg", quality=90)
    Image.fromarray(photo()).save(tmp_path / "small.jpg")
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "small.jpg"), str(tmp_path / "big.jpg"),
         str(tmp_path / "out"), str(height * width)],
        capture_output=True, text=True, check=True,
    )
    per_pixel = float(result.stdout)
    assert per_pixel <= BYTES_PER_PIXEL, f"{per_pixel:.1f} bytes per pixel"
    with Image.open(tmp_path / "out" / "big.jpg") as out:
        assert out.size == (width, height)
