"""The shape the model runs at: a square render size keeps the input's aspect ratio."""

import torch
from torch import nn

from sacolor.inference.colorizer import Colorizer


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
