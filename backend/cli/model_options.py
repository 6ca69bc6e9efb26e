"""The model-loading flags that ``generate``, ``reblend`` and ``serve`` share, in one place."""
from __future__ import annotations

import argparse

from backend.models import prediction
from backend.models.distilled import FAMILIES
from backend.models.options import LoadOptions


def add_model_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=default_model,
                       help="tiny (offline, paints noise), sdxl, a diffusers folder, a .safetensors file or a "
                            "hub repo id (default %(default)s)")
    group.add_argument("--models-dir", default=None, help="a models folder (ComfyUI layout understood)")
    group.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N, mps or cpu")
    group.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"),
                       help="auto: fp16 on GPUs, fp32 on the CPU")
    group.add_argument("--vae", default=None, help="a separate SDXL VAE file (e.g. the fp16-fix VAE)")
    group.add_argument("--cpu-offload", action="store_true", help="keep models in RAM, on the GPU only while they run")
    group.add_argument("--vae-tiling", action="store_true", help="decode large images in tiles")
    group.add_argument("--attention-slicing", action="store_true", help="attention in slices: less memory, slower")
    group.add_argument("--prediction", default="auto", choices=prediction.CHOICES,
                       help="what the model predicts: auto (default: the checkpoint's v_pred marker or the "
                            "scheduler config), epsilon, or v_prediction for v-pred fine-tunes that do not say")
    group.add_argument("--lora-dir", action="append", default=[], metavar="DIR",
                       help="a folder of LoRA files, searched before <models-dir>/loras and <models-dir>/Lora; "
                            "repeatable")
    group.add_argument("--lora-cache", type=int, default=4, metavar="N",
                       help="LoRA files kept loaded between jobs (default %(default)s)")
    group.add_argument("--lora-fold", action=argparse.BooleanOptionalAction, default=None,
                       help="fold LoRAs into the UNet's weights while jobs ask for the same ones, the unfolded weights "
                            "kept in RAM (default: on a GPU without --cpu-offload), or run them as adapters")
    group.add_argument("--allow-download", action="store_true",
                       help="fetch missing sdxl files into the Hugging Face cache before loading")
    group.add_argument("--fast-lora", default=None, metavar="NAME",
                       help="the step-distilled LoRA speed 'fast' applies (e.g. sdxl_lightning_4step_lora."
                            "safetensors in a LoRA folder); its name says the distillation unless --fast-family does")
    group.add_argument("--fast-family", default=None, choices=sorted(FAMILIES),
                       help="the distillation of --fast-lora; without --fast-lora: the served checkpoint is "
                            "distilled (a merged Turbo or Lightning model)")


def load_options(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(model=args.model, models_dir=args.models_dir, device=args.device, dtype=args.dtype,
                       vae=args.vae, cpu_offload=args.cpu_offload, vae_tiling=args.vae_tiling,
                       attention_slicing=args.attention_slicing, allow_download=args.allow_download,
                       prediction=getattr(args, "prediction", "auto"), lora_dirs=list(args.lora_dir),
                       lora_cache=args.lora_cache, lora_fold=getattr(args, "lora_fold", None),
                       fast_lora=getattr(args, "fast_lora", None),
                       fast_family=getattr(args, "fast_family", None))
