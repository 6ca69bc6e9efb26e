"""Attention-level blending of the three branches (METHOD.md 1.6), as pure tensor functions.

Tensors are [rows, heads, tokens, head_dim]. A ``BlendGroup`` names the foreground, background and
blend rows of one guidance half; masks are per query token ([tokens]) and broadcast over heads and
channels. The default (``shared``): the blend's queries attend to the foreground's keys and values
inside the soft mask and to the background's outside it (attention sharing keeps the blend's
background equal to the background layer); the foreground row then takes the blend's output inside
the hard mask, so the object layer matches how it appears in the blend.

A group may stack several foreground rows (a harmonize of the artist's layers). The soft mask is then
one weight map per foreground ([layers, tokens], exclusive by stacking order, see
``masks.stacking_weights``) and the background keeps what they leave: each blend query mixes its
attention on every foreground and on the background by those weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.pipeline.rows import row_index, row_runs
from shared.protocol import AttentionBlend

MASK_EPS = 1e-4


@dataclass(frozen=True)
class BlendGroup:
    fg: int
    bg: int
    bl: int
    stacked: tuple[int, ...] = ()  # further foreground rows above ``fg``, bottom to top

    @property
    def foregrounds(self) -> tuple[int, ...]:
        return (self.fg, *self.stacked)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
              bias: torch.Tensor | None = None, chunk: int | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v; ``chunk`` bounds memory by slicing the queries."""
    if chunk is None or q.shape[-2] <= chunk:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    parts = []
    for start in range(0, q.shape[-2], chunk):
        b = None if bias is None or bias.shape[-2] == 1 else bias[..., start:start + chunk, :]
        parts.append(F.scaled_dot_product_attention(q[..., start:start + chunk, :], k, v,
                                                     attn_mask=bias if b is None else b, scale=scale))
    return torch.cat(parts, dim=-2)


def attention_probabilities(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Head-averaged softmax(q k^T * scale) of one row ([heads, N, d] x [heads, T, d] -> [N, T]).

    SDPA never returns probabilities, so the prior layer computes them here, one head at a time to
    keep the peak at one [N, T] map (4096 x 4096 on SDXL at 1024 px)."""
    total = None
    for h in range(q.shape[0]):
        p = torch.softmax((q[h].float() @ k[h].float().transpose(0, 1)) * scale, dim=-1)
        total = p if total is None else total + p
    assert total is not None
    return total / q.shape[0]


def eos_probabilities(q: torch.Tensor, k: torch.Tensor, scale: float, eos: int) -> torch.Tensor:
    """Head-averaged cross-attention probability of each image token on the text token ``eos``
    ([heads, N, d] x [heads, T, d] -> [N]): one row's content-confidence prior (METHOD.md 1.4)."""
    logits = (q.float() @ k.float().transpose(-1, -2)) * scale
    return torch.softmax(logits, dim=-1)[..., eos].mean(dim=0)


def _per_query(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(1, -1, 1)  # broadcast over heads and channels of one row


def blended_self_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    groups: tuple[BlendGroup, ...],
    soft: torch.Tensor,
    hard: torch.Tensor,
    *,
    scale: float,
    variant: AttentionBlend = AttentionBlend.shared,
    foreground_update: bool = True,
    chunk: int | None = None,
) -> torch.Tensor:
    """Self-attention of all rows with the blend rows mixed per ``variant`` (see module doc).

    Rows are read as views where the layout allows (see ``rows.py``): the plain rows in runs of
    consecutive rows, each branch's rows as one strided slice, so no row of q, k or v is copied."""
    blend_rows = {g.bl for g in groups}
    plain = row_runs([r for r in range(q.shape[0]) if r not in blend_rows])
    out = torch.empty_like(q)
    for run in plain:
        out[run] = attention(q[run], k[run], v[run], scale, chunk=chunk)
    if not groups:
        return out
    if soft.dim() == 2 and soft.shape[0] == 1:
        soft = soft[0]
    if soft.dim() == 2:
        if foreground_update:
            raise ValueError("the foreground update needs a single generated foreground")
        _stacked_blend(q, k, v, out, groups, soft, scale, variant, chunk)
        return out
    s = _per_query(soft).to(q.dtype)

    if variant is AttentionBlend.shared:
        # Each blend row's queries on its group's FG keys and on its BG keys: two softmaxes, mixed per query.
        bl, fg, bg = (row_index([getattr(g, part) for g in groups]) for part in ("bl", "fg", "bg"))
        on_fg = attention(q[bl], k[fg], v[fg], scale, chunk=chunk)
        on_bg = attention(q[bl], k[bg], v[bg], scale, chunk=chunk)
        out[bl] = torch.lerp(on_bg, on_fg, s)  # s * on_fg + (1 - s) * on_bg
    elif variant is AttentionBlend.output_mix:
        for g in groups:
            out[g.bl] = torch.lerp(out[g.bg], out[g.fg], s)
    elif variant is AttentionBlend.joint_softmax:
        # The blend attends to a virtual composite: FG keys weighted by the mask, BG keys by its rest.
        # Self-attention keys sit on the same grid as the queries, so the per-token mask indexes keys.
        m = soft.float().clamp(MASK_EPS, 1 - MASK_EPS)
        bias = torch.cat([m.log(), (1 - m).log()]).to(q.dtype).reshape(1, 1, 1, -1)
        rows = [g.bl for g in groups]
        keys = torch.cat([k[[g.fg for g in groups]], k[[g.bg for g in groups]]], dim=-2)
        values = torch.cat([v[[g.fg for g in groups]], v[[g.bg for g in groups]]], dim=-2)
        out[rows] = attention(q[rows], keys, values, scale, bias=bias, chunk=chunk)
    else:  # pragma: no cover - enum is exhaustive
        raise ValueError(f"unknown attention blend {variant}")

    if foreground_update:
        h = _per_query(hard).to(q.dtype)
        for g in groups:
            out[g.fg].lerp_(out[g.bl], h)  # h * blend + (1 - h) * foreground, in place
    return out


def _stacked_blend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                   groups: tuple[BlendGroup, ...], weights: torch.Tensor, scale: float,
                   variant: AttentionBlend, chunk: int | None) -> None:
    """The blend rows of groups with several foregrounds, ``weights`` [layers, tokens] summing to <= 1
    per token; the background takes the rest. With one layer this is the single-mask blend."""
    layers = weights.shape[0]
    if any(len(g.foregrounds) != layers for g in groups):
        raise ValueError("every blend group needs one foreground row per weight map")
    w = weights.to(q.dtype)
    rest = (1 - w.sum(dim=0)).clamp_min(0)
    bl = row_index([g.bl for g in groups])
    bg = row_index([g.bg for g in groups])
    fgs = [row_index([g.foregrounds[i] for g in groups]) for i in range(layers)]
    if variant is AttentionBlend.joint_softmax:
        # One softmax over every layer's keys and the background's, each biased by the log of its share.
        shares = torch.cat([w, rest[None]]).float().clamp(MASK_EPS, 1).log().to(q.dtype)
        bias = shares.reshape(1, 1, 1, -1)
        keys = torch.cat([k[f] for f in fgs] + [k[bg]], dim=-2)
        values = torch.cat([v[f] for f in fgs] + [v[bg]], dim=-2)
        out[bl] = attention(q[bl], keys, values, scale, bias=bias, chunk=chunk)
        return
    if variant is AttentionBlend.shared:
        parts = [attention(q[bl], k[f], v[f], scale, chunk=chunk) for f in fgs]
        mixed = attention(q[bl], k[bg], v[bg], scale, chunk=chunk) * _per_query(rest)
    elif variant is AttentionBlend.output_mix:
        parts = [out[f] for f in fgs]
        mixed = out[bg] * _per_query(rest)
    else:  # pragma: no cover - enum is exhaustive
        raise ValueError(f"unknown attention blend {variant}")
    for part, share in zip(parts, w):
        mixed = mixed + part * _per_query(share)
    out[bl] = mixed
