"""LoRAs on the pipeline's UNet and both text encoders, switched per job, base weights kept exact.

diffusers converts each file (kohya, LyCORIS LoCon, diffusers, PEFT) and PEFT wraps the layers it
targets as a named adapter; a job without LoRAs runs exactly the model alone however many jobs with
LoRAs came before. A file is loaded once and kept; beyond ``capacity`` the least recently used adapter
is deleted. Switching is setting scales, not loading. While one choice lasts, the UNet's adapters are
folded into its weights (backend.pipeline.lora_fusion): every job of that choice runs the same sums.
"""
from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from backend.models.loras import LoraError, LoraFile
from backend.models.weight_files import WeightFileError, is_torch_file, load_tensors, read_header
from backend.pipeline.lora_fusion import FoldedLoras

log = logging.getLogger(__name__)

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
DEFAULT_CAPACITY = 4
# One key per targeted layer in diffusers' converted state dict: the down (A) factor.
DOWN_SUFFIXES = ("down.weight", "lora_A.weight")


def peft_base(linear: nn.Module) -> nn.Module:
    """The layer under a PEFT LoRA wrapper; the layer itself when it is not wrapped."""
    base = getattr(linear, "base_layer", None)
    return base if isinstance(base, nn.Module) and hasattr(linear, "lora_A") else linear


def lora_terms(linear: nn.Module, x: torch.Tensor) -> tuple[bool, Optional[torch.Tensor]]:
    """(whether the wrapper's output is its base layer's plus plain low-rank terms, those terms on ``x``
    or None when no LoRA is active), so the attention processor keeps its merged-weight path for the
    base layer. Not splittable: a merged wrapper or a variant such as DoRA; run the wrapper whole."""
    lora_a: Any = getattr(linear, "lora_A", None)  # PEFT's ModuleDicts, typed loosely by nn.Module
    if lora_a is None:
        return True, None
    wrapper: Any = linear
    if getattr(linear, "merged", False):
        return False, None
    if getattr(linear, "disable_adapters", False):
        return True, None
    total: Optional[torch.Tensor] = None
    for name in wrapper.active_adapters:
        if name not in lora_a:
            continue
        if name in getattr(linear, "lora_variant", {}):
            return False, None
        a, b = lora_a[name], wrapper.lora_B[name]
        term = b(a(x.to(a.weight.dtype))) * wrapper.scaling[name]
        total = term if total is None else total + term
    return True, None if total is None else total.to(x.dtype)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _library_notices() -> Iterator[list[str]]:
    """What diffusers, transformers and PEFT say while an adapter loads, collected instead of printed:
    transformers lists every base weight of a text encoder as "MISSING" when only adapter tensors load,
    PEFT warns that a model holds several adapters (it is meant to), and diffusers' "unexpected keys"
    warning is the one thing worth keeping: it becomes part of our error."""
    collect = _Collect()
    saved = []
    for name in ("diffusers", "transformers"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers, logger.propagate = [collect], False
        logger.setLevel(logging.WARNING)
    from transformers.utils import logging as tlog

    bar = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield collect.messages
    finally:
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        if bar:
            tlog.enable_progress_bar()


def expected_layers(state_dict: dict[str, Any]) -> dict[str, int]:
    """Layers each component should get from diffusers' converted state dict."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for key in state_dict:
        if key.endswith(DOWN_SUFFIXES):
            component = key.split(".", 1)[0]
            counts[component if component in counts else "unet"] += 1
    return counts


def adapter_layers(model: nn.Module, adapter: str) -> int:
    return sum(1 for m in model.modules() if adapter in (getattr(m, "lora_A", None) or {}))


@dataclass
class _Adapter:
    name: str  # the PEFT adapter name (file names may hold characters PEFT's module dicts refuse)
    file: LoraFile
    layers: int


class LoraAdapters:
    """The LoRAs loaded into one pipeline, and which of them the next job uses."""

    def __init__(self, pipe: Any, capacity: int = DEFAULT_CAPACITY, fold: bool = False) -> None:
        self.pipe = pipe
        self.capacity = max(1, capacity)
        self._adapters: OrderedDict[tuple, _Adapter] = OrderedDict()
        self._serial = 0
        self.active: tuple[tuple[str, float], ...] = ()
        self.fold = fold
        self._folded = FoldedLoras(pipe.unet)
        self._folded_for: tuple = ()  # the choice folded in: (file key, strength) pairs
        self._unfoldable: tuple = ()  # a choice that could not be folded: not tried again

    @property
    def folded(self) -> bool:
        return self._folded.folded

    @property
    def loaded(self) -> list[str]:
        return [a.file.name for a in self._adapters.values()]

    def activate(self, choices: Sequence[tuple[LoraFile, float]]) -> None:
        """Exactly these LoRAs at these strengths for the next job; none = the model alone. A LoRA that
        does not fit raises LoraError and leaves the model as it was."""
        wanted = tuple((file.key, float(strength)) for file, strength in choices)
        if self._folded.folded:
            if self.fold and wanted == self._folded_for:
                return  # the same LoRAs as the job before, folded already
            self._folded.restore()
        if not choices:
            if self._adapters:
                self.pipe.disable_lora()
            self.active = ()
            return
        names = [self._ensure(file).name for file, _ in choices]
        self._evict(keep=set(names))
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, [float(strength) for _, strength in choices])
        self.active = tuple((file.name, float(strength)) for file, strength in choices)
        if self.fold and wanted != self._unfoldable:
            if self._folded.fold(names):
                self._folded_for = wanted
            else:
                self._unfoldable = wanted

    def _ensure(self, file: LoraFile) -> _Adapter:
        key = file.key
        adapter = self._adapters.get(key)
        if adapter is not None:
            self._adapters.move_to_end(key)
            return adapter
        for stale in [k for k in self._adapters if k[0] == key[0]]:  # the file changed on disk
            self._delete(stale)
        self._serial += 1
        adapter = _Adapter(f"lora{self._serial}", file, 0)
        adapter.layers = self._load(adapter)
        self._adapters[key] = adapter
        log.info("LoRA %s loaded (%s, %s, %d layers)", file.name, file.format, file.base, adapter.layers)
        return adapter

    def _load(self, adapter: _Adapter) -> int:
        file, pipe = adapter.file, self.pipe
        if file.problem:
            raise LoraError(file.name, file.problem)
        try:
            source: Any
            if is_torch_file(file.path):
                source = load_tensors(file.path)
            else:
                read_header(file.path)  # a truncated file is named as such before safetensors reads it
                source = str(file.path)
            state, alphas, metadata = pipe.lora_state_dict(source, unet_config=pipe.unet.config,
                                                           return_lora_metadata=True)
        except (WeightFileError, ValueError, KeyError, RuntimeError) as err:
            raise LoraError(file.name, f"LoRA '{file.name}' cannot be read: {err}") from None
        expected = expected_layers(state)
        if not expected["unet"]:
            raise LoraError(file.name, f"LoRA '{file.name}' holds no UNet layers (text-encoder-only LoRAs are "
                                       "not supported)")
        try:
            with _library_notices() as notices:
                pipe.load_lora_into_unet(state, network_alphas=alphas, unet=pipe.unet, adapter_name=adapter.name,
                                         metadata=metadata, _pipeline=pipe)
                for component in COMPONENTS[1:]:
                    if expected[component]:
                        pipe.load_lora_into_text_encoder(state, network_alphas=alphas,
                                                         text_encoder=getattr(pipe, component), prefix=component,
                                                         adapter_name=adapter.name, metadata=metadata, _pipeline=pipe)
            for component in COMPONENTS:
                got = adapter_layers(getattr(pipe, component), adapter.name)
                if got != expected[component]:
                    raise LoraError(file.name, f"LoRA '{file.name}' does not fit this model: {expected[component] - got} "
                                               f"of its {expected[component]} {component} layers have no counterpart"
                                               f"{_first_unexpected(notices)}")
        except (ValueError, RuntimeError, KeyError) as err:
            self._remove(adapter.name)
            if isinstance(err, LoraError):
                raise
            raise LoraError(file.name, f"LoRA '{file.name}' does not fit this model: {_first_line(err)}") from None
        return sum(expected.values())

    def _evict(self, keep: set[str]) -> None:
        for key in list(self._adapters):
            if len(self._adapters) <= self.capacity:
                break
            if self._adapters[key].name not in keep:
                self._delete(key)

    def _delete(self, key: tuple) -> None:
        adapter = self._adapters.pop(key)
        self._remove(adapter.name)
        log.info("LoRA %s unloaded", adapter.file.name)

    def _remove(self, name: str) -> None:
        """Delete an adapter from every component that has it (also after a half-finished load)."""
        with _library_notices():
            self._remove_from_components(name)

    def _remove_from_components(self, name: str) -> None:
        for component in COMPONENTS:
            model = getattr(self.pipe, component)
            if adapter_layers(model, name):
                from peft.tuners.tuners_utils import BaseTunerLayer

                for module in model.modules():
                    if isinstance(module, BaseTunerLayer) and name in getattr(module, "lora_A", {}):
                        module.delete_adapter(name)
                config = getattr(model, "peft_config", None)
                if isinstance(config, dict):
                    config.pop(name, None)


_UNEXPECTED = re.compile(r"unexpected keys found in the model: ([^,\s]+)")
_MISMATCH = re.compile(r"size mismatch for (\S+?)\.lora_[AB]\.[^.]+\.weight: copying a param with shape "
                       r"torch\.Size\((\[[^\]]*\])\) from checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)")


def _first_unexpected(notices: list[str]) -> str:
    for message in notices:
        found = _UNEXPECTED.search(message)
        if found:
            return f" (first: '{found.group(1).removesuffix('.lora_A.weight').removesuffix('.lora_B.weight')}')"
    return ""


def _first_line(err: BaseException) -> str:
    """The first shape mismatch named by layer, else the error's last line."""
    text = str(err)
    found = _MISMATCH.search(text)
    if found:
        layer, theirs, ours = found.groups()
        return f"layer '{layer}' takes a factor of shape {ours}, the LoRA's is {theirs}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
