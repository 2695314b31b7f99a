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


def test_the_chroma_gain_scales_predictions_and_keeps_a_hinted_colour():
    lightness = torch.full((2, 1, 64, 96), 50.0)
    plain = Colorizer(HintEcho(), (64, 64), torch.device("cpu"))
    gained = Colorizer(HintEcho(), (64, 64), torch.device("cpu"), chroma_gain=1.25)
    torch.testing.assert_close(gained.predict_ab(lightness), 1.25 * plain.predict_ab(lightness))
    hints = plain.hint_channels([Hint(40, 30, (200, 60, 40))], (64, 96))
    # The generator sees the hint divided by the gain, so what it echoes comes out as the hint's own colour.
    torch.testing.assert_close(gained.predict_ab(lightness, hints), plain.predict_ab(lightness, hints))
    assert plain.predict_ab(lightness, hints)[0, 0, 0, 0] > 40  # a red hint: a* well above 0, not a no-op


@pytest.mark.parametrize("gain", [0, -1.0, 2.5, float("nan"), True])
def test_a_bad_chroma_gain_is_refused_by_name(gain):
    with pytest.raises(ValueError, match="chroma gain must be a number above 0 and at most 2.0"):
        Colorizer(Zero(), (64, 64), torch.device("cpu"), chroma_gain=gain)
