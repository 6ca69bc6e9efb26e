"""Row selection as views, and the foreground offsets applied either way (merged or low rank)."""
import pytest
import torch
from torch import nn

from backend.pipeline.attention import RowDelta, merging_is_cheaper
from backend.pipeline.rows import row_index, row_runs


def test_row_index_is_a_slice_when_evenly_spaced():
    assert row_index([0, 3]) == slice(0, 4, 3)
    assert row_index([2]) == slice(2, 3)
    assert row_index([1, 2, 3]) == slice(1, 4, 1)
    assert row_index([0, 0]) == [0, 0]  # a re-blend's two blend rows share one FG row: a gather
    assert row_index([3, 1]) == [3, 1]
    x = torch.arange(6)
    assert x[row_index([0, 3])].tolist() == [0, 3] and x[row_index([0, 3])]._base is x  # a view


def test_row_runs_groups_consecutive_rows():
    assert row_runs([0, 1, 3, 4]) == [slice(0, 2), slice(3, 5)]
    assert row_runs({5, 2}) == [slice(2, 3), slice(5, 6)]
    assert row_runs([]) == []


def test_merging_rule_by_hand():
    # 64 x 64 weight: merging costs 4096 r, the low-rank path 128 r per offset token.
    assert merging_is_cheaper(64, 64, 33)
    assert not merging_is_cheaper(64, 64, 32)


def offsets(linear: nn.Linear, rank: int = 3, seed: int = 0) -> RowDelta:
    g = torch.Generator().manual_seed(seed)
    up = torch.randn(linear.out_features, rank, generator=g)
    down = torch.randn(rank, linear.in_features, generator=g)
    return RowDelta({"to_q": (up, down)}, scale=0.7)


@torch.no_grad()  # as the pipeline runs (out= writes refuse autograd)
@pytest.mark.parametrize("tokens", [1, 300])  # the low-rank path, then the merged one
@pytest.mark.parametrize("rows", [(0, 3), (0, 1), (1,), (0, 1, 2, 3, 4, 5)])
def test_offsets_reach_only_their_rows(tokens, rows):
    torch.manual_seed(1)
    linear = nn.Linear(16, 12)
    delta = offsets(linear)
    x = torch.randn(6, tokens, 16)
    up, down = delta.factors["to_q"]
    dense = linear.weight + 0.7 * up @ down
    expected = torch.stack([x[r] @ (dense if r in rows else linear.weight).t() + linear.bias for r in range(6)])
    assert merging_is_cheaper(12, 16, len(rows) * tokens) == (tokens == 300)
    got = delta.project(linear, "to_q", x, rows)
    assert torch.allclose(got, expected, atol=1e-5)


@torch.no_grad()
def test_projection_without_offsets_is_the_linear():
    linear = nn.Linear(4, 4, bias=False)
    x = torch.randn(2, 7, 4)
    assert torch.equal(RowDelta().project(linear, "to_q", x, (0,)), linear(x))
    delta = offsets(linear)
    assert torch.allclose(delta.project(linear, "to_q", x, (1,))[0], linear(x)[0], atol=1e-6)
