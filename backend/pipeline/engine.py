"""The one object the server's worker and the command line drive: a loaded model that runs jobs.

Not thread-safe by design: exactly one worker owns an Engine and calls ``load`` and ``run`` from its
own thread. ``check`` is cheap and may be called from anywhere, before or after loading.
"""
from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from PIL import Image

from backend import __version__
from backend.models import distilled
from backend.models.bundle import SDXL, TINY, Architecture, ModelBundle
from backend.models.loading import load_bundle
from backend.models.loras import LoraError, LoraFile, LoraLibrary
from backend.models.options import LoadOptions
from backend.pipeline import canvas, decoding, local_region
from backend.pipeline.attention import check_prior_block
from backend.pipeline.inputs import JobInputs, read_inputs
from backend.pipeline.layerfusion import LayerFusionPipeline
from backend.pipeline.loras import LoraAdapters
from backend.pipeline.preview import LatentPreviewer
from backend.pipeline.progress import CancelCheck, StepInfo
from shared.fields import Unprocessable, to_json
from shared.protocol import (
    MAX_SEED,
    AddBackgroundRequest,
    AddForegroundRequest,
    BlendMode,
    FastPreset,
    GenerateRequest,
    HarmonizeRequest,
    JobRequest,
    ReblendRequest,
    Speed,
    compose_blend_prompt,
    request_params,
)

PREVIEW_SIDE = 256  # the docker shows it at its width: big enough to judge


@dataclass
class StepUpdate:
    step: int
    total: int
    preview: Optional[Image.Image] = None
    phase: str = "denoise"  # StepInfo.phase: "prior" or "denoise"


@dataclass
class JobResult:
    """``images``: 'foreground' (RGBA), 'background' (RGB) and, unless blend is none, 'blend' (RGB);
    a re-blend returns 'blend' only. ``params``: every parameter as run (seed resolved, model,
    device, timings) as plain JSON values, no image payloads."""

    images: dict[str, Image.Image]
    params: dict[str, Any] = field(default_factory=dict)


def resolve_seed(seed: Optional[int]) -> int:
    return random.SystemRandom().randint(0, MAX_SEED) if seed is None else seed


# A job's progress as the server and CLI see it: StepInfo (progress.py) with the preview decoded.
UpdateCallback = Callable[[StepUpdate], None]


def architecture_of(model: str) -> Architecture:
    return TINY if model == "tiny" else SDXL


class Engine:
    """Loads a model (``tiny``, ``sdxl`` or a path) and runs generate and re-blend jobs on it."""

    def __init__(self, options: "LoadOptions | str" = "tiny"):
        self.options = options if isinstance(options, LoadOptions) else LoadOptions(model=options)
        self.model = self.options.model
        self.architecture = architecture_of(self.model)
        self.bundle: Optional[ModelBundle] = None
        self.pipe: Optional[LayerFusionPipeline] = None
        self._previewer: Optional[LatentPreviewer] = None
        self.lora_library = LoraLibrary.from_options(self.options.models_dir, self.options.lora_dirs)
        self._adapters: Optional[LoraAdapters] = None
        # Speed 'fast' as configured; a DistilledError (a name that says no family) stops the start.
        self.fast = distilled.configured(self.options.fast_lora, self.options.fast_family)

    @property
    def loaded(self) -> bool:
        return self.pipe is not None

    @property
    def device_description(self) -> str:
        """The device and dtype once loaded (e.g. 'cuda:0 (float16)'), before that what was asked for."""
        return self.bundle.describe_device() if self.bundle is not None else self.options.device

    def load(self) -> None:
        if self.pipe is None:
            self.attach(load_bundle(self.options))

    def attach(self, bundle: ModelBundle) -> None:
        """Serve ``bundle``, a model built elsewhere (the SDXL-shape benchmark builds one in memory)."""
        self.bundle = bundle
        self.architecture = bundle.architecture
        self.pipe = LayerFusionPipeline.from_bundle(self.bundle)
        self._previewer = LatentPreviewer(self.bundle.vae)
        self._adapters = LoraAdapters(self.pipe, self.options.lora_cache, self._lora_fold())

    def _lora_fold(self) -> bool:
        if self.options.lora_fold is not None:
            return self.options.lora_fold
        assert self.bundle is not None
        return self.bundle.device.type != "cpu" and not self.bundle.cpu_offload

    def check(self, request: JobRequest) -> None:
        """What the protocol cannot know: the model's size limit, its prior layer, and whether uploaded
        PNGs decode in full. Raises ProtocolError naming the field; costs no GPU work."""
        self._check_model(request)
        self.resolve_loras(request)  # resolves the fast preset too
        read_inputs(request)

    def resolve_fast(self, request: JobRequest) -> Optional[FastPreset]:
        """The step-distilled preset a speed 'fast' job runs (None for 'quality'); Unprocessable names
        ``speed``, ``fast_lora`` or ``steps`` when it cannot run."""
        if request.speed is not Speed.fast:
            return None
        if request.fast_lora is not None:
            try:
                fast = distilled.preset(request.fast_lora)
            except distilled.DistilledError as err:
                raise Unprocessable("invalid_field", str(err), "fast_lora") from None
        elif self.fast is None:
            raise Unprocessable(
                "invalid_field", "no fast preset is configured: start the server (or CLI) with --fast-lora NAME (a "
                "step-distilled LoRA) or --fast-family FAMILY (a distilled checkpoint), or send fast_lora",
                "speed")
        else:
            fast = self.fast
        problem = distilled.fast_steps_problem(fast, request.steps)
        if problem:
            raise Unprocessable("invalid_field", problem, "steps")
        return fast

    def _check_model(self, request: JobRequest) -> None:
        """The size limit and prior layer; once loaded these are the model's own, not a guess."""
        width, height = request.size
        size_field = "width" if isinstance(request, GenerateRequest) else next(iter(request.uploads())) + "_png"
        limit = self.architecture.max_pixels
        if width * height > limit:
            raise Unprocessable(
                "too_large", "%dx%d is too large for the %s model (at most %d pixels)"
                % (width, height, self.architecture.name, limit), size_field)
        if request.options.prior_layer and self.pipe is not None:
            try:
                check_prior_block(self.pipe.unet, request.options.prior_layer)
            except ValueError as err:
                raise Unprocessable("invalid_field", str(err), "options.prior_layer") from None

    def resolve_loras(self, request: JobRequest) -> list[tuple[LoraFile, float]]:
        """The job's LoRA files, found and checked against the model family from their headers alone;
        Unprocessable names the LoRA (its field ``loras[i].name``) otherwise."""
        choices = [(c.name, c.strength) for c in request.loras]
        fast = self.resolve_fast(request)
        if fast is not None and fast.source != distilled.MODEL_SOURCE and fast.source not in dict(choices):
            choices.append((fast.source, 1.0))  # distilled LoRAs are meant at full strength
        resolved = []
        for name, strength in choices:
            try:
                file = self.lora_library.find(name)
                problem = file.problem_for(self.architecture.name)
                if problem:
                    raise LoraError(name, problem)
            except LoraError as err:
                raise Unprocessable("invalid_lora", str(err), _lora_field(request, name)) from None
            resolved.append((file, strength))
        return resolved

    def _activate_loras(self, request: JobRequest) -> None:
        assert self._adapters is not None
        try:
            self._adapters.activate(self.resolve_loras(request))
        except LoraError as err:
            raise Unprocessable("invalid_lora", str(err), _lora_field(request, err.name)) from None

    def run(self, request: JobRequest, *, on_step: Optional[UpdateCallback] = None,
            cancelled: Optional[CancelCheck] = None, preview: bool = False) -> JobResult:
        self.load()
        self._check_model(request)
        assert self.pipe is not None and self.bundle is not None
        inputs = read_inputs(request)  # check() read them too: a job from the CLI or a queue is read once more
        self._activate_loras(request)
        fast = self.resolve_fast(request)
        seed = resolve_seed(request.seed)
        generator = torch.Generator().manual_seed(seed)
        blend_prompt = compose_blend_prompt(*job_prompts(request), request.blend_prompt)

        def report(info: StepInfo) -> None:
            if on_step is None:
                return
            image = None
            if info.preview_latent is not None and self._previewer is not None:
                image = self._previewer(info.preview_latent)
                image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
            on_step(StepUpdate(info.step, info.total, image, info.phase))

        started = time.perf_counter()
        guidance, options = request.guidance, request.options
        if fast is not None:  # the preset's sampler and guidance: what the distillation was trained with
            guidance, options = fast.guidance, dataclasses.replace(options, sampler=fast.sampler)
        sampling = canvas.Sampling(negative_prompt=request.negative_prompt, num_inference_steps=request.steps,
                                   guidance_scale=guidance, options=options, generator=generator,
                                   callback_on_step=report, should_cancel=cancelled, preview=preview)
        if isinstance(request, GenerateRequest):
            images, info = self._generate(request, blend_prompt, sampling)
        else:
            images, info = self._on_layers(request, inputs, blend_prompt, sampling)
        if request.blend_layers:
            images.update(light_images(images, inputs))
        params = request_params(request)
        if fast is not None:  # every parameter as run
            params["guidance"], params["options"]["sampler"] = guidance, options.sampler.value
            params["fast_preset"] = to_json(fast)
        params.update(seed=seed, blend_prompt=blend_prompt, model=self.bundle.name,
                      device=self.device_description, version=__version__,
                      seconds=round(time.perf_counter() - started, 3), **info)
        if inputs.notices:
            params["notices"] = inputs.notices
        return JobResult(images, params)

    def _transparent_tta(self, request: JobRequest) -> bool:
        assert self.bundle is not None
        tta = request.options.transparent_tta
        return self.bundle.device.type == "cuda" if tta is None else tta

    def _generate(self, request: GenerateRequest, blend_prompt: str, sampling: canvas.Sampling):
        assert self.pipe is not None  # run() loaded it
        tta = self._transparent_tta(request)
        out = self.pipe(request.foreground_prompt, request.background_prompt, blend_prompt,
                        height=request.height, width=request.width, blend=request.blend,
                        transparent_tta=tta, **vars(sampling))
        assert out.foreground is not None and out.background is not None
        images = {"foreground": decoding.to_image(out.foreground), "background": decoding.to_image(out.background)}
        images.update(map_images(out.maps, request.size))
        if request.blend is BlendMode.generative:
            assert out.blend is not None
            images["blend"] = decoding.to_image(out.blend)
        elif request.blend is BlendMode.alpha:
            fg = decoding.to_uint8(out.foreground[None])[0]
            bg = decoding.to_uint8(out.background[None])[0]
            images["blend"] = Image.fromarray(decoding.alpha_over(fg, bg), "RGB")
        return images, dict(out.info, transparent_tta=tta)

    def _on_layers(self, request: JobRequest, inputs: JobInputs, blend_prompt: str, sampling: canvas.Sampling):
        """The jobs whose inputs include the artist's layers (canvas.py)."""
        pipe = self.pipe
        assert pipe is not None
        info: dict[str, Any] = {}
        if isinstance(request, ReblendRequest) and request.changed is not None:
            return local_reblend(pipe, request, inputs, blend_prompt, sampling)
        if isinstance(request, (ReblendRequest, HarmonizeRequest)):
            assert inputs.background is not None
            prompts = [request.foreground_prompt] if isinstance(request, ReblendRequest) else \
                [layer.prompt for layer in request.foregrounds]
            out = canvas.harmonize(pipe, inputs.foregrounds, inputs.background, prompts,
                                   request.background_prompt, blend_prompt, strength=request.strength,
                                   sampling=sampling)
            images = {}
        elif isinstance(request, AddBackgroundRequest):
            out = canvas.add_background(pipe, inputs.foregrounds[0], request.foreground_prompt,
                                        request.background_prompt, blend_prompt, sampling=sampling)
            assert out.background is not None
            images = {"background": decoding.to_image(out.background)}
        else:
            assert isinstance(request, AddForegroundRequest) and inputs.background is not None
            target = request.target
            rect = None if target is None else (target.x, target.y, target.width, target.height)
            tta = self._transparent_tta(request)
            out = canvas.add_foreground(pipe, inputs.background, request.foreground_prompt,
                                        request.background_prompt, blend_prompt, target=rect,
                                        sampling=sampling, transparent_tta=tta)
            assert out.foreground is not None
            images = {"foreground": decoding.to_image(out.foreground)}
            images.update(map_images(out.maps, request.size))
            info["transparent_tta"] = tta
        assert out.blend is not None
        images["blend"] = decoding.to_image(out.blend)
        return images, dict(out.info, **info)


def local_reblend(pipe: LayerFusionPipeline, request: ReblendRequest, inputs: JobInputs, blend_prompt: str,
                  sampling: canvas.Sampling) -> tuple[dict[str, Image.Image], dict[str, Any]]:
    """Denoise only the crop the move affected (local_region.py) and feather it into the previous blend."""
    assert request.changed is not None and inputs.previous_blend is not None and inputs.background is not None
    width, height = request.size
    c = request.changed
    changed = local_region.Box(c.x, c.y, c.x + c.width, c.y + c.height)
    crop = local_region.crop_box(changed, width, height)
    window = (slice(None), slice(crop.y0, crop.y1), slice(crop.x0, crop.x1))
    out = canvas.harmonize(pipe, [inputs.foregrounds[0][window]], inputs.background[window],
                           [request.foreground_prompt], request.background_prompt, blend_prompt,
                           strength=request.strength, sampling=sampling,
                           crop=((height, width), (crop.y0, crop.x0)))
    assert out.blend is not None
    new = decoding.to_uint8(out.blend[None])[0]
    blend = local_region.paste(inputs.previous_blend, new, crop, local_region.feather(crop, changed, width, height))
    info = dict(out.info, local_region=[crop.x0, crop.y0, crop.width, crop.height])
    return {"blend": Image.fromarray(blend, "RGB")}, info


def _lora_field(request: JobRequest, name: str) -> str:
    """The request field that named LoRA ``name``: one of ``loras``, or the fast preset's."""
    names = [c.name for c in request.loras]
    if name in names:
        return "loras[%d].name" % names.index(name)
    if request.speed is Speed.fast:
        return "fast_lora" if request.fast_lora is not None else "speed"
    return "loras"


def job_prompts(request: JobRequest) -> tuple[str, str]:
    """The (foreground, background) prompts the default blend prompt joins."""
    if isinstance(request, HarmonizeRequest):
        layers = ", ".join(layer.prompt.strip() for layer in request.foregrounds if layer.prompt.strip())
        return layers, request.background_prompt
    return request.foreground_prompt, request.background_prompt


def map_images(maps: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, Image.Image]:
    return {name: decoding.map_image(values, size, nearest=name == "mask_hard") for name, values in maps.items()}


def light_images(images: dict[str, Image.Image], inputs: JobInputs) -> dict[str, Image.Image]:
    """The blend split into Shadows/Light layers, against the plain composite of the job's own layers
    (generated or given)."""
    import numpy as np

    from backend.pipeline.light_layers import split_light

    foreground = images.get("foreground")
    fg = np.asarray(foreground) if foreground is not None else inputs.foreground_stack()
    background = images.get("background")
    bg = np.asarray(background) if background is not None else inputs.background_uint8()
    layers = split_light(fg, bg, np.asarray(images["blend"]))
    return {name: Image.fromarray(getattr(layers, name), "RGB")
            for name in ("shadows", "light", "foreground_shadows", "foreground_light")}
