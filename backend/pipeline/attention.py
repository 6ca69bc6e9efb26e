"""The attention processor that turns one SDXL UNet into LayerFusion's three denoisers.

Installed on every attention module for the duration of a pipeline call. Per batched UNet call it
reads a shared ``FusionState`` that says which rows are which branch, and:
- adds LayerDiffuse's transparent-attention offsets (low rank) to the foreground rows only, so one
  UNet serves the foreground and the plain branches (no second UNet in memory);
- at the prior layer, when armed, records the head-averaged self-attention probabilities of the
  conditional foreground row (-> structure prior);
- in every cross-attention, when a content row is set, records that row's head-averaged probability
  on the prompt's EOS token (-> the layer-wise content prior c_l of that block);
- in self-attention, when masks are set, blends the blend rows with that block's masks.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from backend.models.lowrank import LowRankDelta
from backend.pipeline.blending import (
    BlendGroup,
    attention,
    attention_probabilities,
    blended_self_attention,
    eos_probabilities,
)
from backend.pipeline.loras import lora_terms, peft_base
from backend.pipeline.masks import LayerStack, LayerwiseMasks, MaskSet
from backend.pipeline.rows import row_runs
from shared.protocol import AttentionBlend

PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass(frozen=True)
class RowLayout:
    """What each row of a batched UNet call is."""

    rows: int
    delta_rows: tuple[int, ...] = ()  # rows that get the transparent-attention offsets
    groups: tuple[BlendGroup, ...] = ()  # blend triples, one per guidance half
    prior_row: int | None = None  # the conditional foreground row, read by the prior capture
    content_row: int | None = None  # the conditional foreground row whose attn2 gives c_l


@dataclass
class PriorCapture:
    """What one armed UNet call (the prior step) records: the prior block's self-attention
    probabilities and, in ``FusionState.content``, every block's EOS probabilities."""

    block: str
    armed: bool = False
    self_probs: torch.Tensor | None = None  # [M, M], heads averaged


@dataclass
class FusionState:
    layout: RowLayout | None = None
    masks: MaskSet | LayerwiseMasks | LayerStack | None = None
    # block -> EOS probability per token of the content row's cross-attention, written by attn2.
    content: dict[str, torch.Tensor] | None = None
    eos: int = 0
    variant: AttentionBlend = AttentionBlend.shared
    foreground_update: bool = True
    capture: PriorCapture | None = None
    chunk: int | None = None  # attention slicing: queries per slice


def merging_is_cheaper(out_features: int, in_features: int, offset_tokens: int) -> bool:
    """Whether forming W + s U D for this call costs fewer multiply-adds (out * in * r) than applying
    the offsets to the foreground rows' tokens in low rank (tokens * r * (in + out)).

    Self-attention projections see thousands of tokens: merging wins. Cross-attention keys and
    values see the 77 prompt tokens: the low-rank product wins."""
    return out_features * in_features < offset_tokens * (in_features + out_features)


def _linear_into(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """``out = x @ weight.T + bias`` written into ``out`` (a contiguous run of rows of the result)."""
    x2, out2 = x.reshape(-1, x.shape[-1]), out.view(-1, out.shape[-1])
    if bias is None:
        torch.mm(x2, weight.t(), out=out2)
    else:
        torch.addmm(bias, x2, weight.t(), out=out2)


@dataclass
class RowDelta:
    """The low-rank offsets of one attention module's projections."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    scale: float = 1.0

    def project(self, linear: nn.Module, name: str, x: torch.Tensor, rows: tuple[int, ...]) -> torch.Tensor:
        """``linear`` on every row of ``x`` [rows, tokens, in], with the offsets on ``rows`` only.

        Rows are addressed as views (no copies): a plain Linear runs once per run of rows that share a
        weight, with the offsets merged into the weight for the foreground runs when that is cheaper.
        """
        pair = self.factors.get(name)
        if pair is None or not rows:
            return linear(x)
        up, down = pair
        base = peft_base(linear)  # the artist's LoRAs wrap the layer; they apply to every row
        weight = getattr(base, "weight", None)
        if (type(base) is nn.Linear and x.dim() == 3 and isinstance(weight, torch.Tensor)
                and merging_is_cheaper(weight.shape[0], weight.shape[1], len(rows) * x.shape[1])):
            splittable, residual = lora_terms(linear, x)
            if splittable:
                merged = torch.addmm(weight, up, down, alpha=self.scale)
                if len(rows) == x.shape[0]:
                    y = F.linear(x, merged, base.bias)
                else:
                    y = x.new_empty(*x.shape[:-1], weight.shape[0])
                    offset = set(rows)
                    for w, part in ((merged, offset), (weight, set(range(x.shape[0])) - offset)):
                        for run in row_runs(part):
                            _linear_into(y[run], x[run], w, base.bias)
                return y if residual is None else y.add_(residual)
        y = linear(x)
        for r in rows:
            y[r].addmm_(x[r] @ down.t(), up.t(), alpha=self.scale)
        return y


class LayerFusionAttnProcessor:
    """A diffusers attention processor (same call signature as ``AttnProcessor2_0``)."""

    def __init__(self, name: str, state: FusionState, delta: RowDelta) -> None:
        self.name = name
        self.block = name.rsplit(".", 1)[0]
        self.is_self = name.endswith("attn1")
        self.state = state
        self.delta = delta

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs) -> torch.Tensor:
        state = self.state
        layout = state.layout or RowLayout(rows=hidden_states.shape[0])
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, height, width = hidden_states.shape
            hidden_states = hidden_states.view(b, c, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)

        rows = layout.delta_rows
        q = self.delta.project(attn.to_q, "to_q", hidden_states, rows)
        k = self.delta.project(attn.to_k, "to_k", context, rows)
        v = self.delta.project(attn.to_v, "to_v", context, rows)
        batch = q.shape[0]
        head_dim = k.shape[-1] // attn.heads
        q, k, v = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (q, k, v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)

        capture = state.capture
        if (self.is_self and capture is not None and capture.armed and self.block == capture.block
                and layout.prior_row is not None):
            capture.self_probs = attention_probabilities(q[layout.prior_row], k[layout.prior_row], attn.scale)
        if not self.is_self and state.content is not None and layout.content_row is not None:
            row = layout.content_row
            state.content[self.block] = eos_probabilities(q[row], k[row], attn.scale, state.eos)

        if self.is_self and state.masks is not None and layout.groups:
            if attention_mask is not None:
                raise ValueError("LayerFusion blending does not support attention masks in self-attention")
            soft, hard = state.masks.for_layer(self.block, q.shape[2], q.device, q.dtype)
            out = blended_self_attention(q, k, v, layout.groups, soft, hard, scale=attn.scale,
                                         variant=state.variant, foreground_update=state.foreground_update,
                                         chunk=state.chunk)
        else:
            bias = None
            if attention_mask is not None:
                bias = attn.prepare_attention_mask(attention_mask, k.shape[2], batch)
                bias = bias.view(batch, attn.heads, -1, bias.shape[-1])
            out = attention(q, k, v, attn.scale, bias=bias, chunk=state.chunk)

        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(q.dtype)
        out = self.delta.project(attn.to_out[0], "to_out.0", out, rows)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def module_deltas(unet: nn.Module, delta: LowRankDelta) -> dict[str, RowDelta]:
    """Split the UNet-wide offsets per attention module (``...attn1`` -> its projections)."""
    per_module: dict[str, RowDelta] = {}
    for name, _ in unet.named_modules():
        if name.endswith((".attn1", ".attn2")):
            factors = {p: delta.factors[f"{name}.{p}"] for p in PROJECTIONS if f"{name}.{p}" in delta.factors}
            per_module[name] = RowDelta(factors, delta.scale)
    return per_module


@contextlib.contextmanager
def fusion_processors(unet: nn.Module, state: FusionState, deltas: dict[str, RowDelta]) -> Iterator[None]:
    """Install LayerFusion's processors on every attention module; restore the previous ones after."""
    # diffusers' UNet declares these; nn.Module's __getattr__ types them as Tensor | Module.
    previous: dict[str, Any] = unet.attn_processors  # type: ignore[assignment]
    set_processor: Any = unet.set_attn_processor
    processors = {}
    for key in previous:
        name = key.removesuffix(".processor")
        processors[key] = LayerFusionAttnProcessor(name, state, deltas.get(name, RowDelta()))
    set_processor(processors)
    try:
        yield
    finally:
        set_processor(previous)


def default_prior_block(unet: nn.Module) -> str:
    """The last transformer block of the last cross-attention up block (METHOD.md 1.3).

    On SDXL that is ``up_blocks.1.attentions.2.transformer_blocks.1``; on the tiny model the
    equivalent block of its only cross-attention up block.
    """
    last = None
    for name, _ in unet.named_modules():
        if name.startswith("up_blocks.") and name.endswith(".attn1"):
            last = name.rsplit(".", 1)[0]
    if last is None:
        raise ValueError("the UNet has no self-attention in its up blocks")
    return last


def check_prior_block(unet: nn.Module, block: str) -> None:
    modules = dict(unet.named_modules())
    if f"{block}.attn1" not in modules or f"{block}.attn2" not in modules:
        raise ValueError(f"'{block}' is not a transformer block of this UNet (it needs attn1 and attn2)")
