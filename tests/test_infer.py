"""sacolor-infer end to end on CPU with a tiny random generator.

Oracles: scikit-image's rgb2lab for the luminance check (L of the output equals
L of the input within 8-bit rounding), the source clip's own timestamps and
audio packets, and the file system (what exists after a run).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from media import FPS, audio_packets, frame_times, make_clip, panning_frames, photo, tiny_checkpoint, truncated_copy, write_video
from namespaces import skip_without_pid_namespaces, with_tmpfs
from PIL import Image
from skimage import color

import sacolor
from sacolor.cli import infer
from sacolor.cli.infer import main
from sacolor.io.images import load_rgb
from sacolor.io.paths import collect_sources, locked_partial
from sacolor.io.video import probe
from sacolor.options import parse_size

# 8-bit rounding of R, G and B moves L by at most about 0.3 (0..100 scale).
L_TOLERANCE = 0.5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"))


def run(checkpoint, *args):
    return main([*map(str, args), "--checkpoint", checkpoint, "--quiet", "--batch-size", "4"])


def lightness(path):
    return color.rgb2lab(load_rgb(path))[..., 0]


def leftovers(folder):
    return [p for p in folder.rglob("*") if ".partial" in p.name]


def test_photos_keep_size_and_luminance_and_gain_colour(checkpoint, tmp_path):
    rgb = photo("astronaut", 72, 100)
    Image.fromarray(rgb).save(tmp_path / "colour.png")  # colour input: only its L is used
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    wide = (color.rgb2gray(rgb) * 65535).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "sixteen.png")
    out = tmp_path / "out"
    assert run(checkpoint, tmp_path / "colour.png", tmp_path / "gray.png", tmp_path / "palette.png", tmp_path / "sixteen.png", "-o", out) == 0
    for name in ("colour.png", "gray.png", "palette.png", "sixteen.png"):
        source, result = tmp_path / name, out / name
        assert Image.open(result).size == (100, 72)
        np.testing.assert_allclose(lightness(result), lightness(source), atol=L_TOLERANCE)
        chroma = color.rgb2lab(load_rgb(result))[..., 1:]
        assert np.abs(chroma).mean() > 5, name  # the model's (strong) colour is there


def test_exif_rotation_is_applied(checkpoint, tmp_path):
    rgb = photo("coffee", 40, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", exif=exif, quality=98)
    (tmp_path / "turned.jpg").write_bytes(buffer.getvalue())
    assert run(checkpoint, tmp_path / "turned.jpg", "-o", tmp_path / "upright.png") == 0
    result = Image.open(tmp_path / "upright.png")
    assert result.size == (40, 64)  # upright: width and height swapped
    np.testing.assert_allclose(lightness(tmp_path / "upright.png"), lightness(tmp_path / "turned.jpg"), atol=L_TOLERANCE)


def test_folder_is_mirrored_and_globs_expand(checkpoint, tmp_path):
    album = tmp_path / "album"
    (album / "1920s").mkdir(parents=True)
    Image.fromarray(photo("astronaut", 40, 48)).save(album / "a.png")
    Image.fromarray(photo("chelsea", 40, 48)).save(album / "1920s" / "b.jpg")
    (album / "notes.txt").write_text("not a photo")  # skipped inside folders
    assert run(checkpoint, album, "-o", tmp_path / "out") == 0
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*")) == ["1920s/b.jpg", "a.png"]
    assert run(checkpoint, str(album / "**" / "*.jpg"), "-o", tmp_path / "globbed") == 0
    assert [p.name for p in (tmp_path / "globbed").iterdir()] == ["b.jpg"]


def test_existing_output_needs_overwrite(checkpoint, tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "in.png")
    target = tmp_path / "out.png"
    target.write_bytes(b"keep me")
    assert run(checkpoint, tmp_path / "in.png", "-o", target) == 1
    assert target.read_bytes() == b"keep me"
    assert "already exists" in capsys.readouterr().err
    assert run(checkpoint, tmp_path / "in.png", "-o", target, "--overwrite") == 0
    assert Image.open(target).size == (100, 72)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_output_that_is_its_input_is_refused(checkpoint, tmp_path, capsys, overwrite):
    # Issue 18, item 7: "pass --overwrite to replace it", and --overwrite then replaced the originals.
    folder = tmp_path / "d"
    folder.mkdir()
    Image.fromarray(photo()).save(folder / "same.png")
    original = (folder / "same.png").read_bytes()
    os.link(folder / "same.png", tmp_path / "hardlink.png")
    for args in ([folder / "same.png", "-o", folder / "same.png"], [folder, "-o", folder],
                 [f"{folder}/../d/same.png", "-o", folder / "same.png"], [folder / "same.png", "-o", tmp_path / "hardlink.png"]):
        assert run(checkpoint, *args, *overwrite) == 1
        err = capsys.readouterr().err
        assert "is the input itself, which is never replaced (not even with --overwrite); pass another -o" in err
        assert (folder / "same.png").read_bytes() == original
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("value", ["bogus", "triton"])
def test_a_bad_sacolor_backend_is_one_usage_error(checkpoint, tmp_path, capsys, monkeypatch, value):
    # Issue 18, item 19: reported once per input, without naming the variable.
    monkeypatch.setenv("SACOLOR_BACKEND", value)
    for name in ("a.png", "b.png"):
        Image.fromarray(photo()).save(tmp_path / name)
    assert run(checkpoint, tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out", "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert err.count("SACOLOR_BACKEND") >= 1 and err.count("sacolor-infer: error:") == 1 and "unset" in err


def test_bad_inputs_are_named_and_the_rest_is_done(checkpoint, tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))
    (tmp_path / "truncated.mp4").write_bytes(make_clip(tmp_path / "whole.mp4", count=6).read_bytes()[:1500])
    (tmp_path / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    status = run(checkpoint, tmp_path / "corrupt.png", tmp_path / "good.png", tmp_path / "truncated.mp4", tmp_path / "notes.txt", tmp_path / "missing.png", "-o", out)
    err = capsys.readouterr().err
    assert status == 1
    for name in ("corrupt.png", "truncated.mp4", "notes.txt", "missing.png"):
        assert name in err
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]
    assert leftovers(tmp_path) == []


def test_an_error_while_colourising_one_input_spares_the_others(checkpoint, tmp_path, capsys, monkeypatch):
    # Item 3: out of memory (or a refusing backend) on one input is reported by name; the rest are done.
    for name in ("a.png", "b.png"):
        Image.fromarray(photo()).save(tmp_path / name)
    clip = make_clip(tmp_path / "film.mp4", count=4, audio=False)
    colorize_photo, colorize = infer.colorize_photo, sacolor.inference.colorizer.Colorizer.colorize

    def photo_fails(colorizer, path, hints=()):
        if path.name == "a.png":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return colorize_photo(colorizer, path, hints)

    def video_fails(self, frames, stabilize=None):
        raise NotImplementedError("no attention backend accepts these inputs")

    monkeypatch.setattr(infer, "colorize_photo", photo_fails)
    monkeypatch.setattr(sacolor.inference.colorizer.Colorizer, "colorize", video_fails)
    out = tmp_path / "out"
    assert run(checkpoint, tmp_path / "a.png", clip, tmp_path / "b.png", "-o", out) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a.png'}: CUDA out of memory" in err and f"{clip}: no attention backend" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(sacolor.inference.colorizer.Colorizer, "colorize", colorize)


def test_several_inputs_into_one_file_name_is_an_argument_error(checkpoint, tmp_path, capsys):
    # Item 8: this used to create a folder named single.png and exit 0.
    for name in ("a.png", "b.png"):
        Image.fromarray(photo()).save(tmp_path / name)
    assert run(checkpoint, tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "single.png") == 2
    assert "-o " in capsys.readouterr().err and not (tmp_path / "single.png").exists()
    (tmp_path / "album").mkdir()
    Image.fromarray(photo()).save(tmp_path / "album" / "c.png")
    assert run(checkpoint, tmp_path / "album", "-o", tmp_path / "single.png") == 2  # a folder input, too
    assert "an input found in a folder needs a folder" in capsys.readouterr().err
    assert run(checkpoint, tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out.v2") == 0  # not a media suffix
    assert sorted(p.name for p in (tmp_path / "out.v2").iterdir()) == ["a.png", "b.png"]


def test_notices_are_messages_not_python_warnings(checkpoint, tmp_path, capfd):
    # Item 22 (and 17: an animated GIF is no longer silently cut to its first frame).
    frames = [Image.fromarray(photo("astronaut", 32, 48)), Image.fromarray(photo("coffee", 32, 48))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    result = subprocess.run(
        [sys.executable, "-m", "sacolor.cli.infer", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "out.png"),
         "--checkpoint", checkpoint, "--quiet"], capture_output=True, text=True,
    )
    assert result.returncode == 0
    assert result.stderr == f"sacolor-infer: warning: {tmp_path / 'anim.gif'}: has 2 frames; only the first is colourised\n"


def test_glob_over_symlink_loops_ends(tmp_path, monkeypatch):
    # Item 12: Python's glob follows symlinked folders, so two loops made '**' endless.
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.png", "d/sub/b.png", "d/.hidden.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d" / "sub" / "up").symlink_to(tmp_path / "d")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d" / "sub")
    monkeypatch.chdir(tmp_path)
    found: list = []
    search = threading.Thread(target=lambda: found.extend(collect_sources(["d/**/*.png"])[0]), daemon=True)
    search.start()
    search.join(timeout=60)  # the old search never ended; this one takes milliseconds
    assert not search.is_alive(), "the search over symlink loops did not end"
    assert [str(source.path) for source in found] == ["d/a.png", "d/sub/b.png"]


def test_a_killed_runs_partial_file_is_no_input_and_is_cleaned_up(checkpoint, tmp_path):
    # Item 17: a re-run over the folder failed on the hidden partial file a killed run left.
    # Issue 18, item 9: a partial file is live while its writer holds a lock on it, whatever its PID says.
    album, out = tmp_path / "album", tmp_path / "coloured"
    album.mkdir()
    out.mkdir()
    Image.fromarray(photo()).save(album / "a.png")
    (album / ".a.0123abcd.partial.png").write_bytes(b"half a PNG")  # in the input folder: not an input
    stale = [out / ".a.0123abcd.partial.png", out / f".a.{os.getpid()}-0123abcd.partial.png"]  # this and older versions'
    for path in stale:
        path.write_bytes(b"half a PNG")
    with locked_partial(out / "b.png") as live:  # a running writer's: kept
        live.write_bytes(b"being written")
        assert run(checkpoint, album, "-o", out) == 0
        assert not any(path.exists() for path in stale) and live.exists()
        assert sorted(p.name for p in out.iterdir()) == sorted([live.name, "a.png"])


# Holds a partial file of TARGET open as a writer does, until the file RELEASE appears.
FIRST_WRITER = """
import sys, time
from pathlib import Path
from sacolor.cli.infer import atomic_output

target, started, release = map(Path, sys.argv[1:])
with atomic_output(target, overwrite=True) as temporary:
    temporary.write_bytes(b"first")
    started.touch()
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
"""
SECOND_WRITER = """
import sys
from pathlib import Path
from sacolor.cli.infer import atomic_output

with atomic_output(Path(sys.argv[1]), overwrite=True) as temporary:
    temporary.write_bytes(b"second")
"""


def test_a_second_writer_in_another_pid_namespace_leaves_the_first_ones_partial_alone(tmp_path):
    # Issue 18, item 9: the second writer could not see the first's PID, deleted its live partial
    # file, and the first failed after the whole film with a wrong message.
    skip_without_pid_namespaces()
    target, started, release = tmp_path / "out.mp4", tmp_path / "started", tmp_path / "release"
    # sh stays PID 1 of the first namespace, so the first writer's PID (2) does not exist in the second's.
    first = subprocess.Popen(["unshare", "--pid", "--fork", "sh", "-c", '"$0" -c "$1" "$2" "$3" "$4"; exit $?',
                              sys.executable, FIRST_WRITER, target, started, release], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if started.exists() or first.poll() is not None:
                break
            threading.Event().wait(0.1)
        assert started.exists(), first.stderr.read() if first.poll() is not None else "the first writer did not start"
        second = subprocess.run(["unshare", "--pid", "--fork", sys.executable, "-c", SECOND_WRITER, target],
                                capture_output=True, text=True)
        assert second.returncode == 0, second.stderr
        assert target.read_bytes() == b"second"
    finally:
        release.touch()
        _, errors = first.communicate(timeout=60)
    assert first.returncode == 0, errors
    assert target.read_bytes() == b"first" and leftovers(tmp_path) == []


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_a_truncated_film_fails_by_its_name_and_writes_nothing(checkpoint, tmp_path, capsys, fraction):
    # Issue 18, items 8 and 18: written with a quarter of its frames and exit 0, or blamed on the
    # output ("cannot write o.mkv (No such file or directory); check the folder's permissions").
    whole = tmp_path / "whole.mkv"
    write_video(whole, panning_frames(12), fps=FPS)
    cut = truncated_copy(whole, tmp_path / "cut.mkv", fraction)
    assert run(checkpoint, cut, "-o", tmp_path / "o.mkv") == 1
    err = capsys.readouterr().err
    assert f"sacolor-infer: error: {cut}: " in err and ("ended early" in err or "no video frames" in err)
    assert "cannot write" not in err and "Traceback" not in err
    assert not (tmp_path / "o.mkv").exists() and leftovers(tmp_path) == []


def test_ctrl_c_during_a_film_is_one_line_and_exit_130(checkpoint, tmp_path):
    # Issue 18, item 16: a full KeyboardInterrupt traceback. No partial file and an intact input held already.
    film = make_clip(tmp_path / "film.mp4", count=96, audio=False)
    original = film.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    # SIGINT at its default: a test run in the background (nohup, `cmd &`) inherits it ignored, and
    # Python then installs no KeyboardInterrupt handler, so the child would run on (exit 0).
    process = subprocess.Popen(
        [sys.executable, "-m", "sacolor.cli.infer", str(film), "-o", str(out / "film.mp4"), "--checkpoint", checkpoint,
         "--batch-size", "1", "--quiet"], stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for _ in range(1200):  # interrupt once the film is being written
        if leftovers(out) or process.poll() is not None:
            break
        threading.Event().wait(0.05)
    writing = bool(leftovers(out))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert writing, f"the film was not being written when interrupted: {err}"
    assert process.returncode == 130, err
    assert err == "sacolor-infer: interrupted; nothing written for the input in progress\n"
    assert list(out.iterdir()) == [] and film.read_bytes() == original


def test_a_long_input_name_gets_a_temporary_name_that_fits(checkpoint, tmp_path):
    # Issue 18, item 22: a 240-character name failed with "File name too long" on the hidden temporary name.
    name = "p" * 236 + ".png"
    Image.fromarray(photo()).save(tmp_path / name)
    assert run(checkpoint, tmp_path / name, "-o", tmp_path / "out") == 0
    assert Image.open(tmp_path / "out" / name).size == (100, 72) and leftovers(tmp_path) == []


def test_a_read_only_output_names_the_output_and_the_cause(checkpoint, tmp_path):
    # Issue 18, item 23: the error named the hidden .partial file, gave no fix, and the clean-up's
    # own EROFS hid the real message.
    Image.fromarray(photo()).save(tmp_path / "in.png")
    command = f'exec "{sys.executable}" -m sacolor.cli.infer "$2" -o "$1/out.png" --checkpoint "$3" --quiet'
    result = with_tmpfs(tmp_path / "ro", "ro", command, tmp_path / "in.png", checkpoint)
    assert result.returncode == 1
    assert (f"cannot write {tmp_path / 'ro' / 'out.png'}: the file system is read-only; pass an output on a "
            "writable one") in result.stderr
    assert ".partial" not in result.stderr and "Traceback" not in result.stderr


def test_an_unwritable_output_folder_is_not_called_a_format_problem(checkpoint, tmp_path, capsys, monkeypatch):
    # Item 17: a permission error was reported as "cannot write this image format".
    Image.fromarray(photo()).save(tmp_path / "in.png")

    def denied(self, fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image.Image, "save", denied)
    assert run(checkpoint, tmp_path / "in.png", "-o", tmp_path / "out.png") == 1
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'out.png'}: permission denied; check the folder's permissions" in err
    assert "format" not in err and "Errno" not in err


def test_video_keeps_frames_timing_and_audio(checkpoint, tmp_path, capsys):
    clip = make_clip(tmp_path / "film.mp4", count=12)
    out = tmp_path / "out"
    assert run(checkpoint, clip, "-o", out) == 0
    result = out / "film.mp4"
    assert frame_times(result) == frame_times(clip)
    assert probe(result).fps == FPS
    assert audio_packets(result) == audio_packets(clip) != []
    assert "CDC" not in capsys.readouterr().err  # --quiet
    assert run(checkpoint, clip, "-o", tmp_path / "raw.mkv", "--no-temporal") == 0
    assert len(frame_times(tmp_path / "raw.mkv")) == 12
    assert leftovers(tmp_path) == []


def test_render_size_and_usage_errors(checkpoint, tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "in.png")
    assert parse_size("256x512") == (256, 512) and parse_size("128") == (128, 128)
    with pytest.raises(ValueError, match="HxW"):
        parse_size("big")
    assert run(checkpoint, tmp_path / "in.png", "-o", tmp_path / "o.png", "--render-size", "64x128") == 0
    assert run(checkpoint, tmp_path / "in.png", "-o", tmp_path / "p.png", "--render-size", "100") == 2
    assert "multiple of 64" in capsys.readouterr().err
    assert main([str(tmp_path / "in.png"), "-o", str(tmp_path / "q.png"), "--checkpoint", str(tmp_path / "nope")]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--temporal" in capsys.readouterr().out


def test_chroma_gain_mutes_the_colour_and_the_curve_is_checked(checkpoint, tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "in.png")
    assert run(checkpoint, tmp_path / "in.png", "-o", tmp_path / "as_predicted.png") == 0
    assert run(checkpoint, tmp_path / "in.png", "-o", tmp_path / "muted.png", "--chroma-gain", "0.5") == 0
    chroma = {name: np.hypot(*color.rgb2lab(load_rgb(tmp_path / f"{name}.png"))[..., 1:].transpose(2, 0, 1)).mean()
              for name in ("as_predicted", "muted")}
    assert 0.35 < chroma["muted"] / chroma["as_predicted"] < 0.65, chroma
    with pytest.raises(SystemExit) as exit_info:
        run(checkpoint, tmp_path / "in.png", "-o", tmp_path / "bad.png", "--chroma-gain", "0")
    assert exit_info.value.code == 2
    assert "--chroma-gain: the gain must be a number above 0 and at most 2.0; got 0.0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run(checkpoint, tmp_path / "in.png", "-o", tmp_path / "bad.png", "--chroma-floor", "30")
    assert exit_info.value.code == 2
    assert "--chroma-floor: the floor must be a number from 0 to 20.0; got 30.0" in capsys.readouterr().err


def test_builtin_model_is_the_default(tmp_path):
    sample = Path(sacolor.__file__).parent / "assets" / "sample_gray.jpg"
    assert main([str(sample), "-o", str(tmp_path / "cat.png"), "--quiet"]) == 0
    result = tmp_path / "cat.png"
    assert Image.open(result).size == Image.open(sample).size
    np.testing.assert_allclose(lightness(result), lightness(sample), atol=L_TOLERANCE)
    assert np.abs(color.rgb2lab(load_rgb(result))[..., 1:]).mean() > 1.0  # it adds colour
