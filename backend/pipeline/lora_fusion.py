"""The active LoRAs folded into the UNet's weights for as long as jobs ask for the same ones.

A PEFT adapter adds its low-rank product on every call of every layer it wraps: with a rank-64
distilled LoRA at SDXL's widths that is about a tenth more UNet work, paid again on each step of every
live re-blend. Folded, the sum sits in the base weights and the UNet's adapters are switched off. The
base weights are copied to the CPU first and copied back when the choice changes, so a job without
LoRAs still runs the model alone bit for bit, however many folded jobs came before. That copy costs host
RAM, which on a GPU machine is the cheap memory: the engine folds by default only there.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)


def foldable(module: Any, adapter: str) -> bool:
    """Whether ``W + delta`` stands for the adapter on this layer: plain low-rank factors (no DoRA or
    other variant, no LoRA bias) on a base layer whose weight is a real tensor."""
    if module.lora_variant.get(adapter) is not None or module.use_dora.get(adapter):
        return False
    if module.lora_bias.get(adapter):
        return False
    weight = getattr(module.get_base_layer(), "weight", None)
    return isinstance(weight, torch.Tensor) and weight.device.type != "meta"


def wrapped_layers(model: nn.Module, adapters: Sequence[str]) -> list[tuple[Any, list[str]]]:
    """Each PEFT LoRA layer of ``model`` with the given adapters it holds."""
    from peft.tuners.lora.layer import LoraLayer

    found = []
    for module in model.modules():
        if isinstance(module, LoraLayer):
            names = [name for name in adapters if name in module.lora_A]
            if names:
                found.append((module, names))
    return found


class FoldedLoras:
    """Folds adapters into one model's base weights and restores them exactly."""

    def __init__(self, model: Any) -> None:
        self.model = model
        # PEFT layer -> its base weight as loaded, on the CPU. Kept after a restore: the base weights
        # only ever change by folding, so the next fold need not copy them out again.
        self._originals: dict[Any, torch.Tensor] = {}
        self._folded: list[Any] = []

    @property
    def folded(self) -> bool:
        return bool(self._folded)

    def fold(self, adapters: Sequence[str]) -> bool:
        """Adds the adapters' weight deltas (at the scales last set) to the base weights and switches the
        model's adapters off. False, touching nothing, when a layer cannot be folded."""
        if self._folded:
            raise RuntimeError("the LoRAs are folded already: restore them first")
        layers = wrapped_layers(self.model, adapters)
        if not layers or not all(foldable(module, name) for module, names in layers for name in names):
            return False
        with torch.no_grad():
            for module, names in layers:
                weight = module.get_base_layer().weight
                if module not in self._originals:
                    self._originals[module] = weight.detach().to("cpu", copy=True)
                total = weight.float()
                for name in names:
                    total = total + module.get_delta_weight(name).to(weight.device, torch.float32)
                weight.copy_(total)
                self._folded.append(module)
        self.model.disable_adapters()
        log.info("LoRAs folded into %d UNet layers", len(self._folded))
        return True

    def restore(self) -> None:
        """The base weights as they were before ``fold``, the adapters switched on again."""
        if not self._folded:
            return
        with torch.no_grad():
            for module in self._folded:
                weight = module.get_base_layer().weight
                weight.copy_(self._originals[module].to(weight.device))
        self._folded.clear()
        self.model.enable_adapters()
