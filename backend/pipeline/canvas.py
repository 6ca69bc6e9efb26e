"""Jobs on the artist's own layers: some branches are *given* and only the others are generated.

A given branch is the VAE latent of the artist's image, re-noised to each step's level with the
step's noise, so its attention keys and values are those of the artist's pixels at that step: the
generated branches share from them exactly as they would from a generated branch (METHOD.md 1.6).
Given rows are conditional only; they need no guidance because nothing is sampled from them.

- ``add_foreground``: background given; foreground (with LayerDiffuse's offsets and the priors of
  its own restart pass) and blend generated, optionally kept inside a target rectangle.
- ``add_background``: foreground given (through the transparent encoder), its alpha the mask;
  background and blend generated.
- ``harmonize``: one or more foregrounds and the background given; the blend starts from their
  composite re-noised to ``strength``. Each layer's alpha is its mask, higher layers cover lower
  ones (``masks.stacking_weights``). A re-blend is the case of one foreground.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch
from diffusers.utils.torch_utils import randn_tensor

from backend.pipeline import conditioning, decoding
from backend.pipeline.attention import (
    FusionState,
    RowLayout,
    check_prior_block,
    default_prior_block,
    fusion_processors,
)
from backend.pipeline.blending import BlendGroup
from backend.pipeline.masks import LayerStack, MaskSet, hard_mask, resample
from backend.pipeline.priors import eos_position
from backend.pipeline.progress import CancelCheck, StepCallback, StepInfo
from backend.pipeline.runs import FG, LayerFusionOutput, Reporter, Run, check_cancel
from backend.pipeline.schedulers import make_scheduler, nearest_step, scheduler_step
from shared.protocol import MethodOptions, PriorMode

if TYPE_CHECKING:
    from backend.pipeline.layerfusion import LayerFusionPipeline


@dataclass
class Sampling:
    """What every job on given layers takes besides its images and prompts."""

    negative_prompt: str = ""
    num_inference_steps: int = 25
    guidance_scale: float = 7.0
    options: Optional[MethodOptions] = None
    generator: Optional[torch.Generator] = None
    callback_on_step: Optional[StepCallback] = None
    should_cancel: Optional[CancelCheck] = None
    preview: bool = False

    @property
    def guided(self) -> bool:
        return self.guidance_scale > 1.0

    @property
    def method(self) -> MethodOptions:
        return self.options or MethodOptions()


def composite(foregrounds: list[torch.Tensor], background: torch.Tensor) -> torch.Tensor:
    """Straight-alpha RGBA layers [4, H, W] (bottom first) over an RGB background [3, H, W]."""
    out = background
    for layer in foregrounds:
        alpha = layer[3:]
        out = layer[:3] * alpha + out * (1 - alpha)
    return out


def rect_mask(size: tuple[int, int], rect: Optional[tuple[int, int, int, int]]) -> torch.Tensor:
    """[H, W] with 1 inside ``rect`` (x, y, width, height) and 0 outside; all ones without one."""
    height, width = size
    mask = torch.zeros(height, width)
    if rect is None:
        return mask + 1
    x, y, w, h = rect
    mask[y:y + h, x:x + w] = 1
    return mask


def _given(scheduler, latent: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A given branch at timestep ``t``: its latent re-noised with the step's noise."""
    return scheduler.add_noise(latent, noise, t[None])


# --- harmonize (and re-blend) -------------------------------------------------------------------


def harmonize(pipe: "LayerFusionPipeline", foregrounds: list[torch.Tensor], background: torch.Tensor,
              foreground_prompts: list[str], background_prompt: str, blend_prompt: str, *,
              strength: float, sampling: Sampling,
              crop: Optional[conditioning.CropOrigin] = None) -> LayerFusionOutput:
    """A blend for given layers: ``foregrounds`` [4, H, W] RGBA bottom first, ``background`` [3, H, W];
    ``crop`` ((height, width), (top, left)) when they are a crop of a larger canvas (a local re-blend).

    Rows: ``[FG_1 .. FG_n, BG, (BL_u,) BL_c]``, the given rows conditional and unguided. Both blend rows
    share from the conditional given rows: the unconditional pairing of a generation would carry the
    same re-noised content under the negative prompt for n + 1 more rows a step, while the blend's
    guidance comes from its own prompt pair."""
    if not 0.0 < strength <= 1.0:
        raise ValueError("strength must be in (0, 1]")
    if not foregrounds or len(foregrounds) != len(foreground_prompts):
        raise ValueError("give one prompt (possibly empty) per foreground layer, and at least one layer")
    options, guided = sampling.method, sampling.guided
    device, dtype = pipe._execution_device, pipe.unet.dtype
    height, width = background.shape[-2:]
    layers = len(foregrounds)
    fg0 = torch.cat([decoding.encode_foreground(pipe.vae, pipe.transparent_encoder, layer[None].to(device),
                                                pipe.transparent_encoder_scale) for layer in foregrounds]).to(dtype)
    mixed = composite(foregrounds, background)
    bg0, bl0 = decoding.encode_rgb(pipe.vae, torch.stack([background, mixed]).to(device)).to(dtype).chunk(2)

    steps = sampling.num_inference_steps
    scheduler = make_scheduler(options.sampler, pipe.scheduler.config)
    scheduler.set_timesteps(steps, device=device)
    start = steps - min(steps, max(1, round(steps * strength)))
    timesteps = scheduler.timesteps[start * scheduler.order:]
    scheduler.set_begin_index(start * scheduler.order)
    noise = randn_tensor(bl0.shape, generator=sampling.generator, device=device, dtype=dtype)
    latent = scheduler.add_noise(bl0, noise, timesteps[:1])

    prompts = [*foreground_prompts, background_prompt, blend_prompt]
    encoded = conditioning.encode_branches(pipe, prompts, sampling.negative_prompt, guided, device)
    ids = conditioning.time_ids(pipe, height, width, encoded.embeds.dtype, device, crop)
    bl = layers + 1
    cond = encoded.pick(ids, list(range(layers + 2)), [bl] if guided else [])
    if guided:  # pick puts BL_u first
        cond = cond.select([*range(1, layers + 2), 0, layers + 2])
    blend_rows = (bl, bl + 1) if guided else (bl,)
    groups = tuple(BlendGroup(0, layers, r, stacked=tuple(range(1, layers))) for r in blend_rows)
    layout = RowLayout(rows=layers + 1 + len(blend_rows), delta_rows=tuple(range(layers)), groups=groups)
    # [I] The artist's alpha is the confidence x (no priors to read: mask_source and content_prior do
    # not apply), through the soft decision boundary sigmoid(k (alpha - tau)): tau says how opaque a
    # pixel must be to count as object (a glass at alpha 0.3 shares the background behind it at the
    # default), k how sharp that cut is. No hard-mask update: the foregrounds are given.
    alphas = torch.stack([layer[3].float().cpu() for layer in foregrounds])
    masks = LayerStack(alphas, (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor),
                       options.threshold, options.boundary_coefficient)
    state = FusionState(layout=layout, masks=masks, variant=options.attention_blend, foreground_update=False,
                        chunk=pipe.attention_chunk)
    report = Reporter(sampling.callback_on_step, len(timesteps), sampling.preview)
    with fusion_processors(pipe.unet, state, pipe._row_deltas):
        for i, t in enumerate(timesteps):
            check_cancel(sampling.should_cancel)
            given = torch.cat([_given(scheduler, fg0, noise, t), _given(scheduler, bg0, noise, t)])
            rows = torch.cat([given, latent, latent]) if guided else torch.cat([given, latent])
            model_in = scheduler.scale_model_input(rows, t)
            eps = pipe.unet(model_in, t, **cond.unet_kwargs(), return_dict=False)[0]
            eps = pipe._guide(eps[bl:bl + 1], eps[bl + 1:bl + 2], sampling.guidance_scale) if guided else eps[bl:]
            latent = scheduler_step(scheduler, eps, t, latent, sampling.generator)
            report(StepInfo(i + 1, len(timesteps), "denoise", int(t)), latent[0])
    blend = decoding.decode_rgb(pipe.vae, latent)[0]
    return LayerFusionOutput(blend=blend, info={"unet_steps": len(timesteps), "unet_rows": layout.rows})


# --- add_background -------------------------------------------------------------------------------


def add_background(pipe: "LayerFusionPipeline", foreground: torch.Tensor, foreground_prompt: str,
                   background_prompt: str, blend_prompt: str, *, sampling: Sampling) -> LayerFusionOutput:
    """A background and a blend for a given RGBA layer [4, H, W].

    Rows ``[BG_u, BL_u, FG_c, BG_c, BL_c]`` (``[FG, BG, BL]`` unguided): the given foreground serves
    both guidance halves; background and blend start from the same noise, as in a generation."""
    options, guided = sampling.method, sampling.guided
    device, dtype = pipe._execution_device, pipe.unet.dtype
    height, width = foreground.shape[-2:]
    latent_size = (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    fg0 = decoding.encode_foreground(pipe.vae, pipe.transparent_encoder, foreground[None].to(device),
                                     pipe.transparent_encoder_scale).to(dtype)
    steps = sampling.num_inference_steps
    scheduler = make_scheduler(options.sampler, pipe.scheduler.config)
    scheduler.set_timesteps(steps, device=device)
    scheduler.set_begin_index(0)
    noise = randn_tensor(fg0.shape, generator=sampling.generator, device=device, dtype=dtype)
    latents = noise.repeat(2, 1, 1, 1) * scheduler.init_noise_sigma  # [BG, BL]

    encoded = conditioning.encode_branches(pipe, [foreground_prompt, background_prompt, blend_prompt],
                                           sampling.negative_prompt, guided, device)
    ids = conditioning.time_ids(pipe, height, width, encoded.embeds.dtype, device)
    cond = encoded.pick(ids, [0, 1, 2], [1, 2] if guided else [])
    fg = 2 if guided else 0
    groups = (BlendGroup(fg, 0, 1), BlendGroup(fg, 3, 4)) if guided else (BlendGroup(0, 1, 2),)
    layout = RowLayout(rows=5 if guided else 3, delta_rows=(fg,), groups=groups)
    matte = hard_mask(foreground[3].float().cpu(), options.threshold, options.boundary_coefficient)
    masks = MaskSet(matte, latent_size, options.threshold, options.boundary_coefficient)
    state = FusionState(layout=layout, masks=masks, variant=options.attention_blend, foreground_update=False,
                        chunk=pipe.attention_chunk)
    report = Reporter(sampling.callback_on_step, steps, sampling.preview)
    with fusion_processors(pipe.unet, state, pipe._row_deltas):
        for i, t in enumerate(scheduler.timesteps):
            check_cancel(sampling.should_cancel)
            given = _given(scheduler, fg0, noise, t)
            rows = torch.cat([latents, given, latents]) if guided else torch.cat([given, latents])
            model_in = scheduler.scale_model_input(rows, t)
            eps = pipe.unet(model_in, t, **cond.unet_kwargs(), return_dict=False)[0]
            eps = pipe._guide(eps[:2], eps[3:], sampling.guidance_scale) if guided else eps[1:]
            latents = scheduler_step(scheduler, eps, t, latents, sampling.generator)
            report(StepInfo(i + 1, steps, "denoise", int(t)), latents[1])
    rgb = decoding.decode_rgb(pipe.vae, latents)
    return LayerFusionOutput(background=rgb[0], blend=rgb[1], info={"unet_steps": steps, "unet_rows": layout.rows})


# --- add_foreground -------------------------------------------------------------------------------


def add_foreground(pipe: "LayerFusionPipeline", background: torch.Tensor, foreground_prompt: str,
                   background_prompt: str, blend_prompt: str, *, target: Optional[tuple[int, int, int, int]],
                   sampling: Sampling, transparent_tta: bool = False) -> LayerFusionOutput:
    """A transparent object and a blend for a given background [3, H, W].

    The foreground branch is generated as in a triplet: a restart pass to the prior step reads its
    priors, then it denoises with the blend, the given background's rows standing in for the generated
    background. Rows ``[FG_u, BL_u, FG_c, BG_c, BL_c]``. With a ``target`` (x, y, width, height) the
    object is kept inside it: the masks are cut to it and, after every step, the foreground's latent
    outside it is reset to the re-noised latent of a fully transparent image (as inpainting keeps its
    known region), and the decoded alpha is cut to it."""
    options, guided = sampling.method, sampling.guided
    if options.prior_mode is not PriorMode.restart:
        raise ValueError("adding an object reads its priors in a restart pass: use prior_mode 'restart'")
    device, dtype = pipe._execution_device, pipe.unet.dtype
    height, width = background.shape[-2:]
    latent_size = (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    steps = sampling.num_inference_steps
    bg0 = decoding.encode_rgb(pipe.vae, background[None].to(device)).to(dtype)
    region_pixels = rect_mask((height, width), target)
    region = resample(region_pixels, latent_size)
    empty = decoding.encode_foreground(pipe.vae, pipe.transparent_encoder,
                                       torch.zeros(1, 4, height, width, device=device),
                                       pipe.transparent_encoder_scale).to(dtype)
    keep = region.to(device, dtype)

    def confine(latents: torch.Tensor, scheduler: Any) -> torch.Tensor:
        # After scheduler.step its index points at the next timestep: the level ``latents`` are at.
        index = min(scheduler.step_index, len(scheduler.timesteps) - 1)
        if scheduler.step_index >= len(scheduler.timesteps):
            outside = empty
        else:
            outside = scheduler.add_noise(empty, noise, scheduler.timesteps[index:index + 1])
        return torch.lerp(outside.expand_as(latents), latents, keep)

    encoded = conditioning.encode_branches(pipe, [foreground_prompt, background_prompt, blend_prompt],
                                           sampling.negative_prompt, guided, device)
    scheduler = make_scheduler(options.sampler, pipe.scheduler.config)
    scheduler.set_timesteps(steps, device=device)
    scheduler.set_begin_index(0)
    block = options.prior_layer or default_prior_block(pipe.unet)
    check_prior_block(pipe.unet, block)
    prior_index = nearest_step(scheduler.timesteps, options.prior_timestep * scheduler.config.num_train_timesteps)
    eos = eos_position(pipe.tokenizer(foreground_prompt, max_length=pipe.tokenizer.model_max_length,
                                      truncation=True).input_ids, pipe.tokenizer.eos_token_id)
    state = FusionState(variant=options.attention_blend, foreground_update=options.foreground_update,
                        chunk=pipe.attention_chunk, eos=eos)
    run = Run(encoded=encoded, time_ids=conditioning.time_ids(pipe, height, width, encoded.embeds.dtype, device),
               options=options, steps=steps, guidance=sampling.guidance_scale, guided=guided,
               latent_size=latent_size, block=block, state=state,
               report=Reporter(sampling.callback_on_step, prior_index + 1 + steps, sampling.preview),
               should_cancel=sampling.should_cancel, region=region, confine=confine if target else None,
               generator=sampling.generator)
    noise = randn_tensor((1, pipe.unet.config.in_channels, *latent_size), generator=sampling.generator,
                         device=device, dtype=dtype)

    cond = encoded.pick(run.time_ids, [0, 1, 2], [0, 2] if guided else [])  # [FG_u, BL_u,] FG_c, BG_c, BL_c
    if guided:
        groups = (BlendGroup(0, 3, 1), BlendGroup(2, 3, 4))
        layout = RowLayout(rows=5, delta_rows=(0, 2), groups=groups, content_row=2)
    else:
        layout = RowLayout(rows=3, delta_rows=(0,), groups=(BlendGroup(0, 1, 2),), content_row=0)
    with fusion_processors(pipe.unet, state, pipe._row_deltas):
        pipe._prior_pass(run, noise, prior_index)
        if state.content is None:  # one reading for every layer: no content row to keep recording
            layout = RowLayout(rows=layout.rows, delta_rows=layout.delta_rows, groups=layout.groups)
        state.layout = layout
        latents = noise.repeat(2, 1, 1, 1) * scheduler.init_noise_sigma  # [FG, BL]
        for i, t in enumerate(scheduler.timesteps):
            check_cancel(sampling.should_cancel)
            given = _given(scheduler, bg0, noise, t)
            rows = torch.cat([latents, latents[:1], given, latents[1:]]) if guided else \
                torch.cat([latents[:1], given, latents[1:]])
            model_in = scheduler.scale_model_input(rows, t)
            eps = pipe.unet(model_in, t, **cond.unet_kwargs(), return_dict=False)[0]
            if guided:
                eps = pipe._guide(eps[:2], eps[[2, 4]], sampling.guidance_scale)
            else:
                eps = eps[[0, 2]]
            latents = scheduler_step(scheduler, eps, t, latents, sampling.generator)
            if target:
                latents[:1] = confine(latents[:1], scheduler)
            run.report(StepInfo(prior_index + 1 + i + 1, run.report.total, "denoise", int(t)), latents[1])

    rgb = decoding.decode_rgb(pipe.vae, latents)
    foreground = decoding.decode_foreground(pipe.vae, pipe.transparent_decoder, latents[FG], rgb[0],
                                            tta=transparent_tta)[0]
    foreground[3] *= region_pixels.to(foreground.device)
    return LayerFusionOutput(foreground=foreground, blend=rgb[1], maps=run.maps, content=run.content,
                             info={"prior_block": block, "prior_step": prior_index,
                                   "unet_steps": run.report.total, "unet_rows": layout.rows})
