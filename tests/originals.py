"""Small re-implementations of four public SAGAN attention modules, as oracles.

Each keeps its original's parameter names (so its ``state_dict()`` has the
original's keys) and its forward's own conventions: which projection is
transposed, which dimension the softmax runs over, and where max-pooling
happens. They are written for these tests from reading the originals:

- heykeetae/Self-Attention-GAN ``sagan_models.py`` ``Self_Attn``
- ajbrock/BigGAN-PyTorch ``layers.py`` ``Attention`` with its ``SN`` mixin
- fastai ``layers.py`` ``SelfAttention`` (v1 ``conv1d``; v2 ``ConvLayer``)
- POSTECH-CVLab/PyTorch-StudioGAN ``src/utils/ops.py`` ``SelfAttention``
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class HeykeetaeSelfAttn(nn.Module):
    """Self_Attn: biased 1x1 convs, C//8 queries and keys, values C -> C, gamma (1,)."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        batch, channels, rows, cols = x.shape
        n = rows * cols
        queries = self.query_conv(x).view(batch, -1, n).permute(0, 2, 1)  # B, N, qk
        keys = self.key_conv(x).view(batch, -1, n)  # B, qk, N
        attention = torch.softmax(torch.bmm(queries, keys), dim=-1)  # B, N(query), N(key)
        values = self.value_conv(x).view(batch, -1, n)  # B, C, N
        out = torch.bmm(values, attention.permute(0, 2, 1)).view(batch, channels, rows, cols)
        return self.gamma * out + x, attention


def _gram_schmidt(x: Tensor, basis: list[Tensor]) -> Tensor:
    for y in basis:
        x = x - torch.mm(y, x.t()) * y / torch.mm(y, y.t())
    return x


class BigGANSNConv2d(nn.Conv2d):
    """SNConv2d: a Conv2d plus BigGAN's SN mixin (buffers u{i}, sv{i}).

    Every forward runs power iterations from the stored u's; only training
    mode writes the new u's (and the logged sv's) back.
    """

    def __init__(self, in_channels: int, out_channels: int, num_svs: int = 1,
                 num_itrs: int = 1, eps: float = 1e-12) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, padding=0, bias=False)
        self.num_svs, self.num_itrs, self.eps = num_svs, num_itrs, eps
        for i in range(num_svs):
            self.register_buffer(f"u{i}", torch.randn(1, out_channels))
            self.register_buffer(f"sv{i}", torch.ones(1))

    def _power_iteration(self, w: Tensor) -> list[Tensor]:
        us: list[Tensor] = []
        vs: list[Tensor] = []
        svs = []
        for i in range(self.num_svs):
            u_buffer = getattr(self, f"u{i}")
            with torch.no_grad():
                v = F.normalize(_gram_schmidt(torch.matmul(u_buffer, w), vs), eps=self.eps)
                vs.append(v)
                u = F.normalize(_gram_schmidt(torch.matmul(v, w.t()), us), eps=self.eps)
                us.append(u)
                if self.training:
                    u_buffer[:] = u
            svs.append(torch.squeeze(torch.matmul(torch.matmul(v, w.t()), u.t())))
        return svs

    def normalised_weight(self) -> Tensor:
        w = self.weight.view(self.weight.size(0), -1)
        for _ in range(self.num_itrs):
            svs = self._power_iteration(w)
        if self.training:
            for i, sv in enumerate(svs):
                getattr(self, f"sv{i}")[:] = sv
        return self.weight / svs[0]

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalised_weight(), None)


class BigGANAttention(nn.Module):
    """Attention: theta/phi C//8, g C//2, o C//2 -> C, no biases; phi(x), g(x) pooled 2x2."""

    def __init__(self, ch: int, spectral_norm: bool = True, num_svs: int = 1) -> None:
        super().__init__()
        self.ch = ch

        def conv(cin: int, cout: int) -> nn.Module:
            if spectral_norm:
                return BigGANSNConv2d(cin, cout, num_svs=num_svs)
            return nn.Conv2d(cin, cout, kernel_size=1, padding=0, bias=False)

        self.theta = conv(ch, ch // 8)
        self.phi = conv(ch, ch // 8)
        self.g = conv(ch, ch // 2)
        self.o = conv(ch // 2, ch)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[2] * x.shape[3]
        theta = self.theta(x).view(-1, self.ch // 8, n)
        phi = F.max_pool2d(self.phi(x), [2, 2]).view(-1, self.ch // 8, n // 4)
        g = F.max_pool2d(self.g(x), [2, 2]).view(-1, self.ch // 2, n // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)  # B, N(query), N/4(key)
        attended = torch.bmm(g, beta.transpose(1, 2)).view(-1, self.ch // 2, x.shape[2], x.shape[3])
        return self.gamma * self.o(attended) + x


def _fastai_conv1d(cin: int, cout: int) -> nn.Module:
    """fastai's spectrally normalised, bias-free 1x1 Conv1d."""
    conv = nn.Conv1d(cin, cout, kernel_size=1, bias=False)
    nn.init.kaiming_normal_(conv.weight)
    return nn.utils.spectral_norm(conv)


class FastaiSelfAttention(nn.Module):
    """fastai SelfAttention; ``v2=True`` wraps each conv in a Sequential like ConvLayer."""

    def __init__(self, n_channels: int, v2: bool = False) -> None:
        super().__init__()

        def conv(cout: int) -> nn.Module:
            layer = _fastai_conv1d(n_channels, cout)
            return nn.Sequential(layer) if v2 else layer

        self.query = conv(n_channels // 8)
        self.key = conv(n_channels // 8)
        self.value = conv(n_channels)
        self.gamma = nn.Parameter(torch.tensor([0.0]))

    def forward(self, x: Tensor) -> Tensor:
        size = x.size()
        x = x.view(*size[:2], -1)
        f, g, h = self.query(x), self.key(x), self.value(x)
        # beta[i, j]: normalised over i (dim=1), then o[:, j] = sum_i h[:, i] beta[i, j].
        beta = F.softmax(torch.bmm(f.transpose(1, 2), g), dim=1)
        o = self.gamma * torch.bmm(h, beta) + x
        return o.view(*size).contiguous()


class StudioGANSelfAttention(nn.Module):
    """StudioGAN SelfAttention: conv1x1_theta/phi/g/attn, no biases, sigma (1,)."""

    def __init__(self, in_channels: int, spectral_norm: bool = False) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> nn.Module:
            layer = nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0, bias=False)
            return nn.utils.spectral_norm(layer, eps=1e-6) if spectral_norm else layer

        self.conv1x1_theta = conv(in_channels, in_channels // 8)
        self.conv1x1_phi = conv(in_channels, in_channels // 8)
        self.conv1x1_g = conv(in_channels, in_channels // 2)
        self.conv1x1_attn = conv(in_channels // 2, in_channels)
        self.maxpool = nn.MaxPool2d(2, stride=2, padding=0)
        self.sigma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        _, ch, h, w = x.size()
        theta = self.conv1x1_theta(x).view(-1, ch // 8, h * w)
        phi = self.maxpool(self.conv1x1_phi(x)).view(-1, ch // 8, h * w // 4)
        attn = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
        g = self.maxpool(self.conv1x1_g(x)).view(-1, ch // 2, h * w // 4)
        attn_g = torch.bmm(g, attn.permute(0, 2, 1)).view(-1, ch // 2, h, w)
        return x + self.sigma * self.conv1x1_attn(attn_g)
