"""How to load a model: the options every entry point (CLI, server, benchmarks) passes to the loader.

Kept free of torch so that command-line parsing and ``--help`` stay fast.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

# Rank kept when the dense diffusers offsets are factorised; the original LoRA file has rank 256.
DEFAULT_RANK = 256


@dataclass
class LoadOptions:
    model: str = "tiny"  # "tiny", "sdxl", a hub repo id, a diffusers folder or a .safetensors checkpoint
    models_dir: Optional[str] = None  # a ComfyUI-style models folder (checkpoints/, layer_model/, vae/)
    device: str = "auto"  # auto | cuda | cuda:N | mps | cpu
    dtype: str = "auto"  # auto | fp16 | bf16 | fp32 (auto: fp16 on CUDA and MPS, fp32 on CPU)
    cpu_offload: bool = False  # keep modules in RAM; the pipeline moves each to the GPU while it runs
    vae_tiling: bool = False
    attention_slicing: bool = False
    # Explicit LayerDiffuse paths, overriding what is found: keys attn, decoder, encoder, encoder_scale.
    layerdiffuse_files: dict[str, Any] = field(default_factory=dict)
    attn_rank: int = DEFAULT_RANK  # rank kept when factorising the dense diffusers offsets
    variant: Optional[str] = "fp16"  # weight variant of a hub repo / diffusers folder, when present
    # A separate VAE file replacing the model's (e.g. <models-dir>/vae/sdxl_vae.safetensors or the fp16-fix
    # VAE, which does not overflow in fp16); either layout.
    vae: Optional[str] = None
    # Fetch missing ``sdxl`` files into the HF cache before loading (the server's first start, if allowed).
    allow_download: bool = False
    # What the UNet predicts: auto (the checkpoint's v_pred / ztsnr markers or the scheduler config),
    # epsilon or v_prediction (backend.models.prediction), for fine-tunes whose files do not say.
    prediction: str = "auto"
    # LoRA folders beyond <models-dir>/loras (ComfyUI) and <models-dir>/Lora (A1111), searched first.
    lora_dirs: list[str] = field(default_factory=list)
    # LoRA files kept loaded as adapters between jobs (least recently used ones are unloaded).
    lora_cache: int = 4
    # Fold the UNet's LoRAs into its weights while jobs ask for the same ones (the unfolded weights wait
    # in RAM); off: they stay adapters, a little slower per step, no RAM copy. None: on a GPU without
    # --cpu-offload, where the copy does not share the memory the model runs in.
    lora_fold: Optional[bool] = None
    # Speed 'fast': a step-distilled LoRA (its name as the LoRA folders list it) and/or the distillation
    # family (backend.models.distilled.FAMILIES); a family alone says the served checkpoint is distilled.
    fast_lora: Optional[str] = None
    fast_family: Optional[str] = None
