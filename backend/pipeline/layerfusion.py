"""LayerFusion on diffusers' SDXL pipeline: three branches, one UNet, attention-level blending.

``__call__`` generates a triplet (METHOD.md 1.2-1.7): a restart prior pass on the foreground branch to
the step nearest 0.8 T reads the priors, the masks are built from them, and the foreground (with
LayerDiffuse's offsets), background and blend branches then denoise together from the same noise,
six rows per UNet call with guidance. Every blend mode runs these fused branches (alpha and none only
differ in what is returned); ``interaction=independent`` is the two-branch baseline without a blend
branch. Jobs on the artist's own layers (re-blend among them) are in ``canvas.py``, which takes this
pipeline as its first argument.
"""
from __future__ import annotations

from typing import Optional

import torch

# The defining module, not the package: mypy reads ``diffusers/__init__``'s dummy stand-in otherwise.
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
    rescale_noise_cfg,
)
from diffusers.utils.torch_utils import randn_tensor

from backend.models import prediction
from backend.models.bundle import ModelBundle
from backend.models.lowrank import LowRankDelta
from backend.pipeline import conditioning, decoding
from backend.pipeline.attention import (
    FusionState,
    PriorCapture,
    RowDelta,
    RowLayout,
    check_prior_block,
    default_prior_block,
    fusion_processors,
    module_deltas,
)
from backend.pipeline.blending import BlendGroup
from backend.pipeline.masks import LayerwiseMasks, resample, token_grid
from backend.pipeline.priors import eos_position, minmax, structure_prior
from backend.pipeline.progress import CancelCheck, StepCallback, StepInfo
from backend.pipeline.runs import BG, BL, FG, LayerFusionOutput, Reporter, Run, check_cancel
from backend.pipeline.schedulers import make_scheduler, nearest_step, scheduler_step
from shared.protocol import BlendMode, ContentPrior, Interaction, MethodOptions, PriorMode

# Attention slicing: queries per slice (a 1024² SDXL image has 4096 at its finest attention level).
SLICE_QUERIES = 1024


def branch_layout(branches: int, guided: bool, blending: bool, prior_row: bool = False,
                  content_row: bool = False) -> RowLayout:
    """Rows ``[FG_u, BG_u, BL_u, FG_c, BG_c, BL_c]`` (unconditional half first), or the conditional
    half alone without guidance. The foreground rows get the offsets; blending pairs rows within a half;
    the conditional foreground row gives the priors."""
    halves = [0, branches] if guided else [0]
    rows = branches * len(halves)
    groups = tuple(BlendGroup(h + FG, h + BG, h + BL) for h in halves) if blending else ()
    fg_cond = halves[-1] + FG
    return RowLayout(rows=rows, delta_rows=tuple(h + FG for h in halves), groups=groups,
                     prior_row=fg_cond if prior_row else None, content_row=fg_cond if content_row else None)


def method_maps(masks: LayerwiseMasks, block: str) -> dict[str, torch.Tensor]:
    """What the method saw at the prior step, on the prior grid: the structure prior, the content prior
    of the prior block and its mean over every block, and the prior block's soft and hard masks."""
    blocks = sorted(masks.content)
    first = masks.mask_set(block)
    return {
        "structure_prior": masks.structure.float(),
        "content_prior": minmax(masks.content_on_grid(block)),
        "content_prior_mean": torch.stack([minmax(masks.content_on_grid(b)) for b in blocks]).mean(dim=0),
        "mask_soft": first.confidence.float(),
        "mask_hard": first.hard,
    }


class LayerFusionPipeline(StableDiffusionXLPipeline):
    """SDXL plus LayerDiffuse's transparent parts. Build with ``from_bundle``."""

    transparent_attn: LowRankDelta
    transparent_decoder: torch.nn.Module
    transparent_encoder: torch.nn.Module
    transparent_encoder_scale: float = 1.0
    attention_chunk: Optional[int] = None
    # Guidance rescale after CFG (Lin et al. 2023, 3.4): 0.7 for v-prediction models, 0 (off) for epsilon.
    # Not diffusers' ``guidance_rescale``, a read-only property of the parent pipeline.
    cfg_rescale: float = 0.0
    _row_deltas: dict[str, RowDelta]

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> "LayerFusionPipeline":
        from diffusers import EulerDiscreteScheduler

        pipe = cls(vae=bundle.vae, text_encoder=bundle.text_encoder, text_encoder_2=bundle.text_encoder_2,
                   tokenizer=bundle.tokenizer, tokenizer_2=bundle.tokenizer_2, unet=bundle.unet,
                   scheduler=EulerDiscreteScheduler.from_config(bundle.scheduler_config))
        pipe.set_progress_bar_config(disable=True)
        pipe.transparent_attn = bundle.transparent_attn
        pipe.transparent_decoder = bundle.transparent_decoder
        pipe.transparent_encoder = bundle.transparent_encoder
        pipe.transparent_encoder_scale = bundle.transparent_encoder_scale
        pipe.cfg_rescale = prediction.guidance_rescale_for(bundle.scheduler_config)
        delta = bundle.transparent_attn
        if bundle.cpu_offload:
            # diffusers moves each registered model to the GPU while it runs; the offsets must already be
            # there for the UNet's foreground rows, and the transparent parts are small enough to stay.
            pipe.enable_model_cpu_offload(device=bundle.device)
            delta = delta.to(bundle.device)
            bundle.transparent_decoder.to(bundle.device)
            bundle.transparent_encoder.to(bundle.device)
        if bundle.attention_slicing:
            pipe.attention_chunk = SLICE_QUERIES
        pipe._row_deltas = module_deltas(bundle.unet, delta)
        return pipe

    # --- shared pieces ---------------------------------------------------------------------------

    def _unet_eps(self, latents: torch.Tensor, t, cond: conditioning.Conditioning, scheduler,
                  guidance: float, guided: bool) -> torch.Tensor:
        """One batched UNet call on ``latents`` (one row per branch), guidance applied per branch. The
        output is whatever the UNet predicts (eps or v); ``scheduler.step`` knows which from its config."""
        model_in = torch.cat([latents, latents]) if guided else latents
        model_in = scheduler.scale_model_input(model_in, t)
        eps = self.unet(model_in, t, **cond.unet_kwargs(), return_dict=False)[0]
        if guided:
            uncond, text = eps.chunk(2)
            eps = self._guide(uncond, text, guidance)
        return eps

    def _guide(self, uncond: torch.Tensor, text: torch.Tensor, guidance: float) -> torch.Tensor:
        """CFG, then (v-prediction) guidance rescale; per row, since rows are separate branches."""
        guided = uncond + guidance * (text - uncond)
        if self.cfg_rescale > 0:
            guided = rescale_noise_cfg(guided, text, guidance_rescale=self.cfg_rescale)
        return guided

    # --- generation --------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        foreground_prompt: str,
        background_prompt: str,
        blend_prompt: str,
        *,
        height: int,
        width: int,
        negative_prompt: str = "",
        num_inference_steps: int = 25,
        guidance_scale: float = 7.0,
        blend: BlendMode = BlendMode.generative,
        options: Optional[MethodOptions] = None,
        generator: Optional[torch.Generator] = None,
        callback_on_step: Optional[StepCallback] = None,
        should_cancel: Optional[CancelCheck] = None,
        transparent_tta: bool = False,
        preview: bool = False,
    ) -> LayerFusionOutput:
        options = options or MethodOptions()
        device = self._execution_device
        guided = guidance_scale > 1.0
        fused = options.interaction is Interaction.fused
        if not fused and blend is BlendMode.generative:
            raise ValueError("interaction 'independent' has no blend branch: ask for blend alpha or none")
        branches = 3 if fused else 2
        prompts = [foreground_prompt, background_prompt, blend_prompt][:branches]
        encoded = conditioning.encode_branches(self, prompts, negative_prompt, guided, device)
        scheduler = make_scheduler(options.sampler, self.scheduler.config)
        scheduler.set_timesteps(num_inference_steps, device=device)
        block = options.prior_layer or default_prior_block(self.unet)
        check_prior_block(self.unet, block)
        prior_index = nearest_step(scheduler.timesteps, options.prior_timestep * scheduler.config.num_train_timesteps)
        restart = fused and options.prior_mode is PriorMode.restart
        prior_steps = prior_index + 1 if restart else 0
        eos = eos_position(self.tokenizer(foreground_prompt, max_length=self.tokenizer.model_max_length,
                                          truncation=True).input_ids, self.tokenizer.eos_token_id)
        run = Run(
            encoded=encoded, time_ids=conditioning.time_ids(self, height, width, encoded.embeds.dtype, device),
            options=options, steps=num_inference_steps, guidance=guidance_scale, guided=guided,
            latent_size=(height // self.vae_scale_factor, width // self.vae_scale_factor), block=block,
            state=FusionState(variant=options.attention_blend, foreground_update=options.foreground_update,
                              chunk=self.attention_chunk, eos=eos),
            report=Reporter(callback_on_step, prior_steps + num_inference_steps, preview),
            should_cancel=should_cancel, generator=generator)
        noise = randn_tensor((1, self.unet.config.in_channels, *run.latent_size), generator=generator,
                             device=device, dtype=self.unet.dtype)
        state = run.state

        with fusion_processors(self.unet, state, self._row_deltas):
            if restart:
                self._prior_pass(run, noise, prior_index)
            latents = noise.repeat(branches, 1, 1, 1) * scheduler.init_noise_sigma
            cond = encoded.pick(run.time_ids, list(range(branches)), list(range(branches)) if guided else [])
            state.layout = self._fused_layout(run, branches)
            for i, t in enumerate(scheduler.timesteps):
                check_cancel(should_cancel)
                online_prior = fused and not restart and i == prior_index
                if online_prior:  # the FG row's attention at this step, then blending from here on
                    state.layout = branch_layout(branches, guided, blending=False, prior_row=True, content_row=True)
                    state.capture, state.content = PriorCapture(block, armed=True), {}
                eps = self._unet_eps(latents, t, cond, scheduler, guidance_scale, guided)
                if online_prior:
                    self._set_masks(run)
                    state.layout = self._fused_layout(run, branches)
                latents = scheduler_step(scheduler, eps, t, latents, generator)
                run.report(StepInfo(prior_steps + i + 1, run.report.total, "denoise", int(t)),
                           latents[BL if fused else FG])

        # Only what is returned is decoded: the blend's VAE pass is skipped for alpha and none.
        generative = fused and blend is BlendMode.generative
        rgb = decoding.decode_rgb(self.vae, latents if generative else latents[:2])
        foreground = decoding.decode_foreground(self.vae, self.transparent_decoder, latents[FG], rgb[FG],
                                                tta=transparent_tta)[0]
        return LayerFusionOutput(foreground=foreground, background=rgb[BG], blend=rgb[BL] if generative else None,
                                 maps=run.maps, content=run.content,
                                 info={"prior_block": block, "prior_step": prior_index, "unet_steps": run.report.total})

    @staticmethod
    def _fused_layout(run: Run, branches: int) -> RowLayout:
        """The joint run's rows: blending once there are masks; with layer-wise content priors the
        conditional foreground row keeps recording each block's c_l for the next call."""
        blending = run.state.masks is not None
        return branch_layout(branches, run.guided, blending=blending,
                             content_row=blending and run.state.content is not None)

    def _prior_pass(self, run: Run, noise: torch.Tensor, prior_index: int) -> None:
        """The foreground branch alone from z_T to the step nearest the prior timestep; the attention
        of its conditional row at that step gives the masks the full run uses from its first step."""
        scheduler = make_scheduler(run.options.sampler, self.scheduler.config)
        scheduler.set_timesteps(run.steps, device=noise.device)
        latents = noise * scheduler.init_noise_sigma
        cond = run.encoded.pick(run.time_ids, [FG], [FG] if run.guided else [])
        halves = (0, 1) if run.guided else (0,)
        for i, t in enumerate(scheduler.timesteps[: prior_index + 1]):
            check_cancel(run.should_cancel)
            last = i == prior_index
            run.state.layout = RowLayout(rows=len(halves), delta_rows=halves, prior_row=halves[-1],
                                         content_row=halves[-1] if last else None)
            run.state.capture = PriorCapture(run.block, armed=True) if last else None
            run.state.content = {} if last else None
            eps = self._unet_eps(latents, t, cond, scheduler, run.guidance, run.guided)
            if not last:
                latents = scheduler_step(scheduler, eps, t, latents, run.generator)
                if run.confine is not None:
                    latents = run.confine(latents, scheduler)
            run.report(StepInfo(i + 1, run.report.total, "prior", int(t)), latents[0])
        self._set_masks(run)

    @staticmethod
    def _set_masks(run: Run) -> None:
        """Priors from the prior step → the masks of the joint run (per block, or the prior block's for
        every layer) and the maps kept for the artist."""
        state, options = run.state, run.options
        capture, content = state.capture, state.content
        if capture is None or capture.self_probs is None or not content or run.block not in content:
            raise RuntimeError(f"the prior block '{run.block}' was not reached during the prior step")
        grid = token_grid(capture.self_probs.shape[0], *run.latent_size)
        region = None if run.region is None else resample(run.region, grid)
        layerwise = LayerwiseMasks(structure_prior(capture.self_probs).reshape(grid), run.latent_size,
                                   options.mask_source, options.threshold, options.boundary_coefficient,
                                   content=dict(content), region=region)
        run.maps, run.content = method_maps(layerwise, run.block), dict(content)
        if options.content_prior is ContentPrior.layerwise:
            state.masks, state.content = layerwise, layerwise.content
        else:  # one reading for every layer and step: the prior block's, at the prior step
            state.masks, state.content = layerwise.mask_set(run.block), None
        state.capture = None
