"""SelfAttention.attention_rows returns rows of the softmax matrix the op applies.

Oracle: the reference backend's full (B, N, M) softmax matrix for the same
inputs, so these rows are the attention the module really uses.
"""

from __future__ import annotations

import pytest
import torch

from sacolor import SelfAttention
from sacolor.attention.backends.reference import _forward
from sacolor.attention.inputs import AttentionInputs

CHANNELS = 12


def _module(pool: int, bias: bool, out_proj: bool = False) -> SelfAttention:
    torch.manual_seed(0)
    module = SelfAttention(CHANNELS, qk_channels=4, pool=pool, bias=bias, out_proj=out_proj,
                           v_channels=6 if out_proj else None, scale=0.7)
    if bias:
        with torch.no_grad():  # biases start at small values; make them matter
            for conv in (module.query, module.key):
                conv.bias.normal_()
    return module


def _full_softmax(module: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """(B, N, M) softmax weights from the reference backend."""
    w = module.projection_weights()
    inputs = AttentionInputs.create(
        x, w["wq"], w["bq"], w["wk"], w["bk"], w["wv"], w["bv"], w["wo"], w["bo"],
        module.gamma.detach(), module.pool, module.scale,
    )
    return _forward(inputs).p


@pytest.mark.parametrize(
    "pool, bias, size",
    [(1, True, (5, 7)), (1, False, (9, 4)), (2, True, (6, 10)), (2, False, (8, 4))],
)
def test_rows_match_the_full_softmax_matrix(pool: int, bias: bool, size: tuple[int, int]) -> None:
    module = _module(pool, bias, out_proj=pool == 2)
    torch.manual_seed(1)
    x = 2 * torch.randn(2, CHANNELS, *size)
    height, width = size
    positions = [(0, 0), (height - 1, width - 1), (height // 2, 1), (1, width // 2)]

    rows = module.attention_rows(x, positions)

    assert rows.shape == (2, len(positions), height // pool, width // pool)
    assert rows.dtype == torch.float32
    full = _full_softmax(module, x)
    expected = full[:, [r * width + c for r, c in positions]]
    torch.testing.assert_close(rows.flatten(2), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rows.sum((2, 3)), torch.ones(2, len(positions)))


def test_tensor_positions_and_low_precision_input() -> None:
    module = _module(pool=1, bias=True)
    x = torch.randn(1, CHANNELS, 5, 6)
    positions = torch.tensor([[4, 5], [2, 3]])
    rows = module.attention_rows(x.bfloat16(), positions)
    assert rows.dtype == torch.float32
    expected = module.attention_rows(x.bfloat16().float(), [(4, 5), (2, 3)])
    torch.testing.assert_close(rows, expected)


@pytest.mark.parametrize(
    "positions",
    [[(5, 0)], [(0, 6)], [(-1, 0)], [(0, -1)], [], [(1, 2, 3)], [(0.5, 1.0)], "a", [[0, 1], [2]]],
    ids=["row-high", "col-high", "row-negative", "col-negative", "empty", "triple", "float",
         "string", "ragged"],
)
def test_bad_positions_raise_value_error(positions) -> None:
    module = _module(pool=1, bias=False)
    with pytest.raises(ValueError, match="positions"):
        module.attention_rows(torch.randn(1, CHANNELS, 5, 6), positions)


def test_bad_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match=f"x must be \\(B, {CHANNELS}, H, W\\)"):
        _module(pool=1, bias=False).attention_rows(torch.randn(1, CHANNELS + 1, 4, 4), [(0, 0)])
    with pytest.raises(ValueError, match="pool=2"):
        _module(pool=2, bias=False).attention_rows(torch.randn(1, CHANNELS, 5, 4), [(0, 0)])
