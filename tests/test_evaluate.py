"""sacolor-eval: the JSON report, its all-gray baseline against an independent
scikit-image computation, video CDC rows, and bad inputs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from media import make_clip, photo, tiny_checkpoint
from PIL import Image
from skimage import color
from skimage.metrics import peak_signal_noise_ratio

from sacolor.cli.evaluate import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"))


def report(checkpoint, capsys, *args):
    status = main([*map(str, args), "--checkpoint", checkpoint, "--json", "--quiet"])
    return status, json.loads(capsys.readouterr().out)


def gray_baseline_psnr(rgb):
    """PSNR of the L-only image (a = b = 0) written as 8-bit, with scikit-image alone."""
    lab = color.rgb2lab(rgb)
    lab[..., 1:] = 0
    gray = np.round(np.clip(color.lab2rgb(lab), 0, 1) * 255) / 255
    return peak_signal_noise_ratio(rgb / 255.0, gray, data_range=1.0)


def test_json_report_on_photos(checkpoint, tmp_path, capsys):
    photos = {"astronaut.png": photo("astronaut", 48, 64), "coffee.png": photo("coffee", 48, 64)}
    for name, rgb in photos.items():
        Image.fromarray(rgb).save(tmp_path / name)
    status, result = report(checkpoint, capsys, tmp_path)
    assert status == 0
    assert result["n"] == 2 and {"model", "gray"} <= set(result)
    assert set(result["model"]) == {"psnr", "ssim", "ciede2000", "colorfulness"}
    expected = np.mean([gray_baseline_psnr(rgb) for rgb in photos.values()])
    assert result["gray"]["psnr"] == pytest.approx(expected, abs=0.05)
    assert result["gray"]["colorfulness"] < 1.0 < result["model"]["colorfulness"]
    # Per-image rows, whose mean is the summary; CIEDE2000 of the gray guess, by scikit-image alone.
    rows = {Path(row["path"]).name: row for row in result["images"]}
    assert set(rows) == set(photos)
    for metric in ("psnr", "ciede2000"):
        assert np.mean([row["model"][metric] for row in rows.values()]) == pytest.approx(result["model"][metric])
    for name, rgb in photos.items():
        lab = color.rgb2lab(rgb)
        gray = color.lab2rgb(np.concatenate([lab[..., :1], np.zeros_like(lab[..., 1:])], -1))
        expected_de = color.deltaE_ciede2000(lab, color.rgb2lab(np.round(gray * 255) / 255)).mean()
        assert rows[name]["gray"]["ciede2000"] == pytest.approx(expected_de, abs=0.05)


def test_hint_points_need_a_model_that_takes_hints(checkpoint, tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "p.png")
    assert main([str(tmp_path / "p.png"), "--checkpoint", checkpoint, "--hint-points", "3", "--quiet"]) == 2
    assert "takes no colour hints" in capsys.readouterr().err


def test_video_reports_cdc_with_and_without_stabilisation(checkpoint, tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", count=8, audio=False)
    status, result = report(checkpoint, capsys, clip, "--max-frames", "6")
    assert status == 0 and result["n"] == 6
    for row in ("model", "model_no_temporal", "gray", "truth"):
        assert result[row]["cdc"] >= 0.0


def test_video_only_rows_are_averaged_over_the_video_frames(checkpoint, tmp_path, capsys):
    # model_no_temporal exists for video frames only: mixing in photos must not dilute it.
    clip = make_clip(tmp_path / "clip.mp4", count=6, audio=False)
    _, alone = report(checkpoint, capsys, clip)
    Image.fromarray(photo("coffee", 48, 64)).save(tmp_path / "photo.png")
    _, mixed = report(checkpoint, capsys, clip, tmp_path / "photo.png")
    assert mixed["n"] == alone["n"] + 1
    for metric in ("psnr", "ssim", "colorfulness"):
        assert mixed["model_no_temporal"][metric] == pytest.approx(alone["model_no_temporal"][metric])


def test_bad_input_is_named_but_the_rest_is_reported(checkpoint, tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff" + bytes(30))
    status = main([str(tmp_path / "good.png"), str(tmp_path / "bad.jpg"), "--checkpoint", checkpoint, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1 and "bad.jpg" in captured.err
    assert json.loads(captured.out)["n"] == 1


def test_a_gray_truth_is_scored_without_numpy_warnings(checkpoint, tmp_path, capfd):
    # Issue 18, item 24: a gray ground truth equals the gray baseline: PSNR's 1/0 printed divide-by-zero warnings.
    Image.fromarray(photo("chelsea", 40, 64)).convert("L").convert("RGB").save(tmp_path / "gray.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([str(tmp_path / "gray.png"), "--checkpoint", checkpoint, "--json", "--quiet"]) == 0
    captured = capfd.readouterr()
    assert json.loads(captured.out)["gray"]["psnr"] == 100.0 and "Warning" not in captured.err
