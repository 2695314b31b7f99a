"""The shape the model runs at (a square render size keeps the input's aspect ratio), and the chroma gain."""

import pytest
import torch
from torch import nn

from sacolor.inference.colorizer import Colorizer
from sacolor.inference.hints import Hint


class Zero(nn.Module):
    multiple = 32

    def forward(self, l_norm):
        return torch.zeros(l_norm.shape[0], 2, *l_norm.shape[-2:])


def test_square_render_size_keeps_the_aspect_ratio():
    colorizer = Colorizer(Zero(), (256, 256), torch.device("cpu"))
    assert colorizer.model_size((272, 640)) == (160, 384)  # a 2.35:1 film frame, about 256*256 pixels
    assert colorizer.model_size((1000, 1000)) == (256, 256)
    assert colorizer.model_size((10, 4000))[0] == 32  # never below one multiple
    assert colorizer.to_render_size(torch.zeros(1, 1, 272, 640)).shape[-2:] == (160, 384)
    assert colorizer.predict_ab(torch.zeros(2, 1, 600, 400)).shape == (2, 2, 320, 224)


def test_non_square_render_size_is_used_exactly():
    colorizer = Colorizer(Zero(), (128, 256), torch.device("cpu"))
    assert colorizer.model_size((1000, 1000)) == (128, 256)


class HintEcho(nn.Module):
    """Paints every pixel with the first hint's normalised ab it was given, or a fixed colour without hints."""

    multiple = 32
    accepts_hints = True

    def forward(self, l_norm, hints=None):
        if hints is None:
            return torch.tensor([0.2, -0.1]).view(1, 2, 1, 1).expand(l_norm.shape[0], 2, *l_norm.shape[-2:])
        at = hints[:, 2:].flatten(1).argmax(1)
        ab = hints[:, :2].flatten(2)[torch.arange(len(at)), :, at]
        return ab.view(-1, 2, 1, 1).expand(-1, 2, *l_norm.shape[-2:])


@pytest.mark.parametrize("gain, floor", [(1.25, 0.0), (1.4, 3.0), (0.8, 10.0)])
def test_the_chroma_curve_shapes_predictions_and_keeps_a_hinted_colour(gain, floor):
    lightness = torch.full((2, 1, 64, 96), 50.0)
    plain = Colorizer(HintEcho(), (64, 64), torch.device("cpu"))
    shaped = Colorizer(HintEcho(), (64, 64), torch.device("cpu"), chroma_gain=gain, chroma_floor=floor)
    ab = plain.predict_ab(lightness)
    chroma = ab.norm(dim=1, keepdim=True)  # (22, -11): chroma 24.6, above every floor here
    torch.testing.assert_close(shaped.predict_ab(lightness), ab * gain * (chroma - floor) / chroma)
    hints = plain.hint_channels([Hint(40, 30, (200, 60, 40))], (64, 96))
    # The generator sees the hint through the curve's inverse, so what it echoes comes out as the hint's own colour.
    torch.testing.assert_close(shaped.predict_ab(lightness, hints), plain.predict_ab(lightness, hints))
    assert plain.predict_ab(lightness, hints)[0, 0, 0, 0] > 40  # a red hint: a* well above 0, not a no-op


def test_the_chroma_floor_shows_weak_colour_gray():
    weak = Colorizer(Zero(), (64, 64), torch.device("cpu"), chroma_floor=3.0)
    ab = torch.tensor([[2.0, 1.0], [30.0, -40.0]]).view(2, 2, 1, 1)  # chroma 2.2 and 50
    torch.testing.assert_close(weak.shape_chroma(ab).flatten(1), torch.tensor([[0.0, 0.0], [28.2, -37.6]]))


@pytest.mark.parametrize("gain", [0, -1.0, 2.5, float("nan"), True])
def test_a_bad_chroma_gain_is_refused_by_name(gain):
    with pytest.raises(ValueError, match="chroma gain must be a number above 0 and at most 2.0"):
        Colorizer(Zero(), (64, 64), torch.device("cpu"), chroma_gain=gain)


@pytest.mark.parametrize("floor", [-1.0, 25, float("nan"), "3"])
def test_a_bad_chroma_floor_is_refused_by_name(floor):
    with pytest.raises(ValueError, match="chroma floor must be a number from 0 to 20.0"):
        Colorizer(Zero(), (64, 64), torch.device("cpu"), chroma_floor=floor)
