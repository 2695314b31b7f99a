"""The no-truth flicker report: the ab warp error against known offsets, ab histograms against
numpy, shots split at cuts, ``sacolor-eval --no-truth`` (JSON, table, PNG plot, refusals), and the
video benchmark's stress test ranking stabiliser strengths by warp error as CDC does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color, data

from benchmarks.bench_infer_video import STRENGTHS, flicker_stress
from media import make_clip, panning_frames, tiny_checkpoint
from sacolor.colour import lab_to_rgb
from sacolor.cli.evaluate import main as evaluate
from sacolor.evaluation.flicker import FlickerMeter, ab_histograms
from sacolor.inference.temporal import FlowSettings

OFFSETS = [0.0, 0.0, 8.0, 8.0, 8.0, -4.0, -4.0, -4.0]  # a, b shifted by this in frame t: jumps into frames 2 and 5


def panning_lab(count: int) -> torch.Tensor:
    """Lab frames (count, 3, 48, 64) of a slow diagonal pan across the astronaut photo."""
    lab = color.rgb2lab(data.astronaut()[100:200, 100:200])
    return torch.stack([torch.from_numpy(lab[2 * t : 2 * t + 48, 3 * t : 3 * t + 64]).permute(2, 0, 1).float() for t in range(count)])


def test_ab_histograms_match_numpy():
    ab = torch.rand(3, 2, 5, 7) * 300 - 150  # some values outside the range: counted in the end bins
    hist = ab_histograms(ab)
    for t in range(3):
        for c in range(2):
            expected, _ = np.histogram(ab[t, c].clamp(-128.5, 127.49).numpy(), bins=256, range=(-128.5, 127.5))
            np.testing.assert_allclose(hist[t, c], expected / 35)


def test_warp_error_measures_chroma_jumps_and_not_motion():
    lab = panning_lab(len(OFFSETS))
    shifted = lab.clone()
    shifted[:, 1:] += torch.tensor(OFFSETS).view(-1, 1, 1, 1)
    meter = FlickerMeter()
    meter.add(lab[:, :1], {"steady": lab_to_rgb(lab), "jumpy": lab_to_rgb(shifted)})
    report = meter.report("jumpy", worst=2)
    steady, jumpy = report["warp_error_per_frame"]["steady"], report["warp_error_per_frame"]["jumpy"]
    assert steady[0] is None and jumpy[0] is None and report["scene_cuts"] == []
    assert max(steady[1:]) < 2.0  # a moving scene with steady colour: little error
    for t in (2, 5):  # a jump of d in a and b: about 2 d^2 more
        jump = OFFSETS[t] - OFFSETS[t - 1]
        assert jumpy[t] - steady[t] == pytest.approx(2 * jump**2, rel=0.15)
    assert report["worst_frames"] == [2, 5]
    assert report["total"]["jumpy"]["warp_error"] > 10 * report["total"]["steady"]["warp_error"]
    assert report["total"]["jumpy"]["cdc"] > report["total"]["steady"]["cdc"]


def test_what_appears_is_not_flicker():
    # From frame 3 a bright card with a colour of its own covers a corner: those pixels fail the
    # occlusion check, so the card's new colour adds nothing to the warp error, only real chroma change does.
    lab = panning_lab(5)
    lab[3:, 0, 24:, 40:] = 95.0
    lab[3:, 1:, 24:, 40:] = 40.0
    meter = FlickerMeter()
    meter.add(lab[:, :1], {"model": lab_to_rgb(lab)})
    report = meter.report("model")
    assert report["scene_cuts"] == [] and report["warp_error_per_frame"]["model"][3] < 10.0  # unmasked: 37


def test_shots_are_split_at_cuts_and_short_shots_have_no_cdc():
    lab = panning_lab(8)
    other = torch.from_numpy(color.rgb2lab(data.coffee()[:48, :64])).permute(2, 0, 1).float()
    lab = torch.cat([lab[:6], other[None].expand(2, -1, -1, -1)])  # frames 6 and 7: another shot
    meter = FlickerMeter(FlowSettings())
    meter.add(lab[:3, :1], {"model": lab_to_rgb(lab[:3])})  # in two batches: pairs span the batches
    meter.add(lab[3:, :1], {"model": lab_to_rgb(lab[3:])})
    report = meter.report("model")
    assert report["frames"] == 8 and report["scene_cuts"] == [6]
    assert [(s["first"], s["last"]) for s in report["shots"]] == [(0, 5), (6, 7)]
    assert report["warp_error_per_frame"]["model"][6] is None and report["warp_error_per_frame"]["model"][5] is not None
    first, second = report["shots"][0]["model"], report["shots"][1]["model"]
    assert first["cdc"] is not None and second["cdc"] is None  # 2 frames: too few for CDC's gaps 1, 2, 4
    assert report["total"]["model"]["cdc"] == pytest.approx(first["cdc"])
    assert second["colorfulness"] > 0


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    root = tmp_path_factory.mktemp("flicker")
    return make_clip(root / "clip.mp4", count=12, audio=False), tiny_checkpoint(root / "model")


def test_cli_no_truth_report_json_and_plot(film, tmp_path, capsys):
    clip, checkpoint = film
    plot = tmp_path / "flicker.png"
    status = evaluate(["--no-truth", str(clip), "--checkpoint", str(checkpoint), "--json", "--plot", str(plot), "--quiet"])
    assert status == 0
    (report,) = json.loads(capsys.readouterr().out)["videos"]
    assert report["path"] == str(clip) and report["frames"] == 12 and report["scene_cuts"] == [6]  # the clip cuts halfway
    assert [(s["first"], s["last"]) for s in report["shots"]] == [(0, 5), (6, 11)]
    for row in ("model", "model_no_temporal", "gray"):
        assert set(report["total"][row]) == {"warp_error", "cdc", "colorfulness"}
    gray, model = report["total"]["gray"], report["total"]["model"]  # gray: ab 0 up to 8-bit rounding
    assert gray["warp_error"] < 0.05 and gray["cdc"] < 0.1 * model["cdc"] and gray["colorfulness"] < 0.5
    assert model["warp_error"] > 1 and model["colorfulness"] > 5
    assert len(report["worst_frames"]) == 3 and not set(report["worst_frames"]) & {0, 6}
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 500
    assert [p.name for p in tmp_path.iterdir()] == ["flicker.png"]  # nothing half-written beside it


def test_cli_no_truth_table_and_several_plots(film, tmp_path, capsys):
    clip, checkpoint = film
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.read_bytes())
    status = evaluate(["--no-truth", str(clip), str(other), "--checkpoint", str(checkpoint), "--plot", str(tmp_path / "f.png"), "--quiet"])
    out = capsys.readouterr().out
    assert status == 0 and "shot 2 (frames 6-11)" in out and "total" in out and "warp_error" in out
    assert sorted(p.name for p in tmp_path.glob("f_*.png")) == ["f_clip.png", "f_other.png"]


def test_films_of_the_same_name_get_plots_of_their_own(film, tmp_path, capsys):
    # Issue 18, item 6: a/clip.mp4 and b/clip.mp4 both drew f_clip.png, so the first was lost.
    clip, checkpoint = film
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "clip.mp4").write_bytes(clip.read_bytes())
    status = evaluate(["--no-truth", str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "clip.mp4"),
                       "--checkpoint", str(checkpoint), "--max-frames", "3", "--plot", str(tmp_path / "f.png"), "--quiet"])
    assert status == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("f_*.png")) == ["f_a_clip.png", "f_b_clip.png"]


@pytest.mark.parametrize("plot, message", [
    ("flicker", "the plot is a PNG; pass a file name ending in .png, such as"),
    ("folder/", "is a folder; pass a file name such as"),
    ("missing/f.png", "the folder {tmp}/missing does not exist; create it first"),
    ("no-matplotlib.png", "--plot needs matplotlib: pip install matplotlib"),
])
def test_plot_is_checked_before_any_work(film, tmp_path, capsys, monkeypatch, plot, message):
    # Issue 18, item 17: checked only after the whole evaluation, which was then thrown away.
    import importlib.util

    from sacolor.cli import evaluate as evaluate_module

    clip, checkpoint = film
    (tmp_path / "folder").mkdir()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" and "no-matplotlib" in plot else find_spec(name, *a))
    monkeypatch.setattr(evaluate_module.Colorizer, "from_checkpoint", lambda *a: pytest.fail("work began"))
    assert evaluate(["--no-truth", str(clip), "--checkpoint", str(checkpoint), "--plot", str(tmp_path / plot)]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_failed_plot_keeps_the_report(film, tmp_path, capsys, monkeypatch):
    from sacolor.cli import evaluate as evaluate_module

    clip, checkpoint = film

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate_module, "plot_report", disk_full)
    status = evaluate(["--no-truth", str(clip), "--checkpoint", str(checkpoint), "--max-frames", "3", "--json",
                       "--plot", str(tmp_path / "f.png"), "--quiet"])
    captured = capsys.readouterr()
    assert status == 1 and "cannot draw the plot" in captured.err and "No space left" in captured.err
    assert len(json.loads(captured.out)["videos"]) == 1


def test_cli_no_truth_refusals(film, tmp_path, capsys):
    clip, checkpoint = film
    Image.fromarray(panning_frames(1)[0]).save(tmp_path / "photo.png")
    assert evaluate([str(clip), "--checkpoint", str(checkpoint), "--plot", str(tmp_path / "p.png")]) == 2
    assert "add --no-truth" in capsys.readouterr().err
    assert evaluate(["--no-truth", str(clip), "--checkpoint", str(checkpoint), "--hint-points", "3"]) == 2
    assert "does not go with --no-truth" in capsys.readouterr().err
    status = evaluate(["--no-truth", str(tmp_path / "photo.png"), str(clip), "--checkpoint", str(checkpoint), "--json", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1 and "photo.png: --no-truth reports flicker on films" in captured.err
    assert len(json.loads(captured.out)["videos"]) == 1  # the film is still reported


def test_benchmark_warp_error_ranks_strengths_like_cdc(tmp_path):
    result = flicker_stress(panning_frames(24), str(tiny_checkpoint(tmp_path / "model")), None)
    order = ["off"] + [f"strength_{s}" for s in STRENGTHS]
    for metric in ("warp_error", "cdc"):
        values = [result[key][metric] for key in order]
        assert values == sorted(values, reverse=True) and len(set(values)) == len(values), (metric, values)
