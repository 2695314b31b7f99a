"""Full-resolution colour transfer in strips: the same pixels as the whole-image
path, and a peak memory per pixel within ``BYTES_PER_PIXEL`` (issue 12, item 4)."""

from __future__ import annotations

import json
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
    with pytest.raises(MemoryError, match=r"in.png: a 100x72 photo \(0 MP\) needs about 0.086 MB and 0.001 MB is available"):
        colorize_photo(colorizer, tmp_path / "in.png")


def test_pillows_bomb_guard_gives_way_to_the_memory_check(colorizer, tmp_path, monkeypatch):
    # Issue 18, item 20: a 182 MP scan (2.2 GB needed, 22 GB free) was refused as a decompression bomb.
    # Here Pillow's limit is lowered so that a small photo stands for it.
    Image.fromarray(photo()).save(tmp_path / "in.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x72 is past twice that: Pillow refuses
    # Pillow 12 checks crops too; real strips (STRIP_PIXELS) are far below its real limit, as these are below 2000.
    monkeypatch.setattr(photo_module, "STRIP_PIXELS", 1000)
    assert colorize_photo(colorizer, tmp_path / "in.png").shape == (72, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored for everyone else
    monkeypatch.setattr(photo_module, "available_memory", lambda: None)  # nothing else bounds it: Pillow's guard holds
    with pytest.raises(ValueError, match="in.png: cannot read image .*decompression bomb"):
        colorize_photo(colorizer, tmp_path / "in.png")


MB = 10**6


@pytest.mark.parametrize("membership, mounts, files, headroom", [
    # cgroup v1, as on this project's machine: the memory hierarchy on its own mount.
    ("4:memory:/jobs/a\n0::/\n", "35 31 0:32 / {root}/memory rw - cgroup cgroup rw,memory\n",
     {"memory/jobs/a/memory.limit_in_bytes": 300 * MB, "memory/jobs/a/memory.usage_in_bytes": 100 * MB,
      "memory/memory.limit_in_bytes": 9223372036854771712, "memory/memory.usage_in_bytes": 5000 * MB}, 200 * MB),
    # cgroup v2, nested: the parent's limit is the tighter one.
    ("0::/user/job\n", "41 31 0:38 / {root}/unified rw - cgroup2 cgroup2 rw\n",
     {"unified/user/job/memory.max": "max", "unified/user/job/memory.current": 50 * MB,
      "unified/user/memory.max": 120 * MB, "unified/user/memory.current": 80 * MB}, 40 * MB),
    # A container: its own cgroup is what is mounted.
    ("0::/job\n", "41 31 0:38 /job {root}/unified rw - cgroup2 cgroup2 rw\n",
     {"unified/memory.max": 64 * MB, "unified/memory.current": 60 * MB}, 4 * MB),
    ("0::/\n", "41 31 0:38 / {root}/unified rw - cgroup2 cgroup2 rw\n", {"unified/memory.max": "max"}, None),
])
def test_cgroup_memory_limits_are_read_in_v1_and_nested_v2(tmp_path, membership, mounts, files, headroom):
    # Issue 18, item 21: only /sys/fs/cgroup/memory.max was read, so v1 and nested v2 limits were missed.
    for name, value in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"{value}\n")
    assert photo_module.cgroup_headroom(membership, mounts.format(root=tmp_path)) == headroom


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



def tiny_checkpoint_path(tmp_path) -> str:
    return str(tiny_checkpoint(tmp_path / "tiny.safetensors"))


@pytest.mark.parametrize(
    "values, message",
    [
        (np.where(np.arange(48)[None, :] < 24, np.nan, 0.5) * np.ones((32, 1)), "NaN or infinite"),
        (np.full((32, 48), np.inf), "NaN or infinite"),
        (np.full((32, 48), -np.inf), "NaN or infinite"),
        (np.linspace(0, 255, 32 * 48).reshape(32, 48), r"in \[0, 1\]; got 0 to 255 \(for 0..255 pass uint8"),
    ],
)
def test_a_float_array_outside_0_1_is_refused_not_clipped(values, message):
    # Issue 18, item 1: NaN gave an all-black picture, 0-255 floats or inf an all-white one.
    import sacolor

    with pytest.raises(ValueError, match=message):
        sacolor.colorize(values.astype(np.float32), device="cpu")


def test_an_empty_image_is_refused_and_render_size_takes_the_cli_forms(tmp_path):
    # Issue 18, item 14: an empty image gave ZeroDivisionError; render_size=128 or [128, 128] a TypeError.
    import sacolor

    checkpoint = tiny_checkpoint_path(tmp_path)
    for empty in (np.zeros((0, 5), np.uint8), np.zeros((4, 0, 3), np.float32), Image.new("L", (0, 0))):
        with pytest.raises(ValueError, match="image is empty"):
            sacolor.colorize(empty, checkpoint=checkpoint, device="cpu")
    gray = np.asarray(Image.fromarray(photo("chelsea", 40, 60)).convert("L"))
    expected = sacolor.colorize(gray, checkpoint=checkpoint, device="cpu", render_size=(64, 64))
    for size in (64, "64", [64, 64], "64x64"):
        np.testing.assert_array_equal(sacolor.colorize(gray, checkpoint=checkpoint, device="cpu", render_size=size), expected)
    with pytest.raises(ValueError, match="render_size: .* give N, 'HxW' or"):
        sacolor.colorize(gray, checkpoint=checkpoint, device="cpu", render_size="big")


def test_a_checkpoints_chroma_gain_is_used_unless_one_is_given(tmp_path):
    import sacolor

    plain = tiny_checkpoint_path(tmp_path)
    muted = tiny_checkpoint(tmp_path / "muted.safetensors")
    config = json.loads(muted.with_suffix(".json").read_text())
    muted.with_suffix(".json").write_text(json.dumps({**config, "chroma_gain": 0.5, "chroma_floor": 4}))
    gray = np.asarray(Image.fromarray(photo("chelsea", 40, 60)).convert("L"))
    as_exported = sacolor.colorize(gray, checkpoint=muted, device="cpu")
    np.testing.assert_array_equal(
        as_exported, sacolor.colorize(gray, checkpoint=plain, device="cpu", chroma_gain=0.5, chroma_floor=4)
    )
    assert not np.array_equal(as_exported, sacolor.colorize(gray, checkpoint=plain, device="cpu", chroma_gain=0.5))
    np.testing.assert_array_equal(sacolor.colorize(gray, checkpoint=muted, device="cpu", chroma_gain=1.0, chroma_floor=0),
                                  sacolor.colorize(gray, checkpoint=plain, device="cpu"))


def test_a_pil_image_is_turned_upright_and_a_bytes_path_is_a_path(tmp_path):
    # Issue 18, item 24: colorize(PIL image) ignored EXIF orientation, which a path honours;
    # colorize(b"path") said "got shape ()".
    import io

    import sacolor

    checkpoint = tiny_checkpoint_path(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    buffer = io.BytesIO()
    Image.fromarray(photo("coffee", 40, 64)).save(buffer, format="JPEG", exif=exif)
    (tmp_path / "turned.jpg").write_bytes(buffer.getvalue())
    from_path = sacolor.colorize(tmp_path / "turned.jpg", checkpoint=checkpoint, device="cpu")
    assert from_path.shape == (64, 40, 3)
    with Image.open(tmp_path / "turned.jpg") as image:
        np.testing.assert_array_equal(sacolor.colorize(image, checkpoint=checkpoint, device="cpu"), from_path)
    from_bytes = sacolor.colorize(str(tmp_path / "turned.jpg").encode(), checkpoint=checkpoint, device="cpu")
    np.testing.assert_array_equal(from_bytes, from_path)
    with pytest.raises(TypeError, match="image must be a file path, a PIL image or a numpy array; got int"):
        sacolor.colorize(7, checkpoint=checkpoint, device="cpu")


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
