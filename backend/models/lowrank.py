"""LayerDiffuse's transparent-attention weights as low-rank offsets of the UNet's attention Linears.

Both published layouts end up here: the original LoRA file already is ``up @ down`` per projection,
and the diffusers file's dense offsets are factorised once at load (METHOD.md section 5), so the
pipeline has one code path: the offset is applied only to the foreground rows of a batch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class LowRankDelta:
    """``W' = W + scale * up @ down`` for each Linear named (diffusers path, e.g.
    ``up_blocks.1.attentions.2.transformer_blocks.1.attn1.to_q``); ``up`` is [out, r], ``down`` [r, in]."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    scale: float = 1.0

    def __len__(self) -> int:
        return len(self.factors)

    @property
    def rank(self) -> int:
        return max((up.shape[1] for up, _ in self.factors.values()), default=0)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.factors.values() for t in pair)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "LowRankDelta":
        moved = {k: (u.to(device=device, dtype=dtype), d.to(device=device, dtype=dtype)) for k, (u, d) in self.factors.items()}
        return LowRankDelta(moved, self.scale)

    def dense(self, name: str) -> torch.Tensor:
        up, down = self.factors[name]
        return self.scale * (up.float() @ down.float())

    def check_against(self, unet: nn.Module) -> None:
        """Raise ValueError naming the first offset that has no Linear of its shape in ``unet``."""
        modules = dict(unet.named_modules())
        for name, (up, down) in self.factors.items():
            module = modules.get(name)
            if not isinstance(module, nn.Linear):
                raise ValueError(f"transparent-attention offset '{name}' has no matching Linear in the UNet")
            if (up.shape[0], down.shape[1]) != tuple(module.weight.shape):
                raise ValueError(
                    f"transparent-attention offset '{name}' is {up.shape[0]}x{down.shape[1]}, "
                    f"the UNet's weight is {tuple(module.weight.shape)}"
                )
            if up.shape[1] != down.shape[0]:
                raise ValueError(f"transparent-attention offset '{name}' has mismatched ranks")

    def merged_copy(self, unet: nn.Module) -> nn.Module:
        """A second UNet with the offsets merged in: the memory-hungry way, kept for equivalence tests."""
        merged = copy.deepcopy(unet)
        modules = dict(merged.named_modules())
        with torch.no_grad():
            for name in self.factors:
                weight = modules[name].weight
                weight += self.dense(name).to(weight.dtype)
        return merged

    @classmethod
    def from_dense(cls, offsets: dict[str, torch.Tensor], rank: int, scale: float = 1.0) -> "LowRankDelta":
        """Factorise dense offsets by truncated SVD: exact when an offset's rank is at most ``rank``."""
        factors = {}
        for name, delta in offsets.items():
            u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
            r = min(rank, s.shape[0])
            root = s[:r].sqrt()
            factors[name] = ((u[:, :r] * root).contiguous(), (root[:, None] * vh[:r]).contiguous())
        return cls(factors, scale)
