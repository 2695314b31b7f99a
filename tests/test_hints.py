"""Colour hints: parsing, the hint channels users' points become, and training's sampled hints."""

import json

import pytest
import torch

from sacolor.colour import normalize_ab, rgb_to_lab
from sacolor.inference.hints import Hint, hint_map, load_hints, parse_colour, parse_hint, sample_hints


def test_parse_hint_and_colour():
    assert parse_hint(" 12.5, 7 ,#3366CC") == Hint(12.5, 7.0, (0x33, 0x66, 0xCC))
    assert parse_colour("ff0000") == (255, 0, 0)
    for bad in ("1,2", "a,2,#ffffff", "1,2,#fffff", "1,2,red"):
        with pytest.raises(ValueError, match="--hint"):
            parse_hint(bad)


def test_load_hints_accepts_a_list_or_an_object_and_names_bad_entries(tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"hints": [{"x": 1, "y": 2, "color": "#010203"}]}))
    assert load_hints(path) == [Hint(1.0, 2.0, (1, 2, 3))]
    for content, message in [("[1", "not valid JSON"), ('[{"x": 1}]', "entry 0"),
                             ('[{"x": true, "y": 1, "color": "#000000"}]', "must be numbers"), ('"x"', "expected a list")]:
        path.write_text(content)
        with pytest.raises(ValueError, match=message):
            load_hints(path)


def test_hint_map_places_the_colour_at_the_render_scale():
    hints = hint_map([Hint(199, 0, (0, 0, 255))], input_size=(100, 200), render_size=(32, 64), device=torch.device("cpu"))
    assert hints.shape == (1, 3, 32, 64)
    assert hints[0, 2].sum() == 4  # a 3x3 patch clipped at the corner: 2x2
    blue = normalize_ab(rgb_to_lab(torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1))[0, 1:, 0, 0])
    torch.testing.assert_close(hints[0, :2, 0, 63], blue)


def test_sample_hints_share_and_true_colours():
    ab = torch.rand(6, 2, 16, 16) * 2 - 1
    assert sample_hints(ab, 0.0).abs().sum() == 0
    hints = sample_hints(ab, 1.0, torch.Generator().manual_seed(0))
    mask = hints[:, 2]
    assert (mask.flatten(1).sum(1) > 0).all()  # every image has a hint at share 1
    # Single-pixel patches carry that pixel's true colour; all values stay in range.
    assert hints[:, :2].abs().max() <= 1 and set(mask.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("write, message", [
    (lambda path: path.write_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    (lambda path: path.write_text("[" + "9" * 5000 + "]"), "is not valid JSON"),
    (lambda path: path.mkdir(), "is a folder; pass a JSON file of hints"),
])
def test_a_hints_file_that_python_cannot_hold_is_a_named_usage_error(tmp_path, capsys, write, message):
    # Issue 18, items 11 and 24: RecursionError or ValueError tracebacks; a folder "does not exist".
    from sacolor.cli.infer import main

    hints = tmp_path / "h.json"
    write(hints)
    with pytest.raises(ValueError, match=message):
        load_hints(hints)
    (tmp_path / "in.png").write_bytes(b"")
    assert main([str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--hints", str(hints)]) == 2
    assert f"--hints {hints}" in capsys.readouterr().err
