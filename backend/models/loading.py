"""``load_bundle``: from a model name to a ModelBundle on a device, in a dtype.

The SDXL base comes from a Hugging Face repo id (through the HF cache), a local diffusers folder, or a
single original-layout ``.safetensors`` file (offline, with the configs we ship); the LayerDiffuse
files from ``--models-dir``, the HF cache, or explicit paths. ``tiny`` is written to disk in the real
formats first and then goes through exactly the same code.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from backend.models import catalog, layerdiffuse, prediction, single_file, tiny
from backend.models.bundle import SDXL, TINY, Architecture, ModelBundle
from backend.models.options import LoadOptions
from backend.models.transparent_vae import TransparentVAEEncoder, channels_for

log = logging.getLogger(__name__)

# The tiny model's first UNet width (SDXL's is 320): how a tiny checkpoint or folder is recognised.
TINY_CONV_IN_CHANNELS = tiny.UNET_CONFIG["block_out_channels"][0]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def resolve_device(request: str = "auto") -> torch.device:
    if request == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(request)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise catalog.ModelNotAvailable(f"device '{request}' asked for, but this torch has no usable CUDA")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise catalog.ModelNotAvailable(f"device '{request}' asked for, but Apple MPS is not available")
    return device


def resolve_dtype(device: torch.device, request: str = "auto") -> torch.dtype:
    if request == "auto":
        # Half precision halves SDXL's 7 GB on a GPU; CPUs are slow and inexact at it.
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if request not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}; got '{request}'")
    if request == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise catalog.ModelNotAvailable("bf16 asked for, but this GPU does not support it; use fp16")
    return DTYPES[request]


@dataclass
class BaseSource:
    kind: str  # "single_file" | "folder" | "repo"
    location: str
    config_dir: Optional[Path] = None  # single_file: component configs; tokenizers may live elsewhere
    # tokenizer and tokenizer_2 folders; None for the second: build it from the first (same vocabulary)
    tokenizers: Optional[tuple[Path, Optional[Path]]] = None
    models_dir: Optional[Path] = None  # where a missing tokenizer was looked for, for the message


def resolve_base(options: LoadOptions, tiny_root: Optional[Path] = None) -> tuple[BaseSource, Architecture]:
    models_dir = Path(options.models_dir) if options.models_dir else None
    if options.model == "tiny":
        from backend.models.tiny_files import ensure_tiny_files

        files = ensure_tiny_files(tiny_root)
        return BaseSource("single_file", str(files.checkpoint), files.configs,
                          (files.configs / "tokenizer", files.configs / "tokenizer_2")), TINY
    if options.model == "sdxl":
        # The base model only: a fine-tune in checkpoints/ is loaded by naming it (--model NAME).
        base = catalog.sdxl_base_checkpoint(models_dir)
        if base:
            return _single_file(base, models_dir)
        return _repo(catalog.SDXL_REPO)
    path = Path(options.model).expanduser()
    if not path.exists() and models_dir and Path(models_dir, "checkpoints", options.model).is_file():
        path = Path(models_dir, "checkpoints", options.model)  # a file name from `models list`
    if path.is_file():
        return _single_file(path, models_dir, tiny_root)
    if path.is_dir():
        if not Path(path, "unet", "config.json").is_file():
            raise catalog.ModelNotAvailable(f"{path} is a folder but not a diffusers model (no unet/config.json)")
        return BaseSource("folder", str(path)), _architecture(single_file.read_config(path, "unet"))
    if options.model.count("/") == 1 and not options.model.endswith(".safetensors"):
        return _repo(options.model)
    raise catalog.ModelNotAvailable(f"model '{options.model}': no such file or folder, and not a hub repo id")


def _architecture(unet_config: dict) -> Architecture:
    """SDXL unless the UNet is the tiny one (a tiny folder or repo then gets the tiny LayerDiffuse parts)."""
    widths = unet_config.get("block_out_channels") or [None]
    return TINY if widths[0] == TINY_CONV_IN_CHANNELS else SDXL


def _repo(repo: str) -> tuple[BaseSource, Architecture]:
    config = catalog.cached_file(repo, "unet/config.json")
    architecture = _architecture(json.loads(config.read_text())) if config else SDXL
    return BaseSource("repo", repo), architecture


def _single_file(path: Path, models_dir: Optional[Path], tiny_root: Optional[Path] = None,
                 ) -> tuple[BaseSource, Architecture]:
    """A checkpoint file; the tiny model's own checkpoint (recognised by its 32-channel ``conv_in``) gets
    the tiny configs, anything else SDXL's."""
    from backend.models.weight_files import read_header

    header = read_header(path)
    conv_in = header.get(catalog.UNET_CONV_IN)
    if conv_in is not None and conv_in.shape[0] == TINY_CONV_IN_CHANNELS:
        from backend.models.tiny_files import ensure_tiny_files

        configs = ensure_tiny_files(tiny_root).configs
        return BaseSource("single_file", str(path), configs, (configs / "tokenizer", configs / "tokenizer_2")), TINY
    # Before anything else (the tokenizers, say): a refiner or SD1.5 file is named as such at once.
    single_file.require_sdxl(path, header)
    source = BaseSource("single_file", str(path), single_file.SDXL_CONFIG_DIR, catalog.tokenizer_folders(models_dir),
                        models_dir)
    return source, SDXL


def load_base(source: BaseSource, dtype: torch.dtype, variant: Optional[str],
              vae: Optional[str] = None) -> dict[str, Any]:
    """UNet, VAE, text encoders, tokenizers and the scheduler config, on the CPU. A single file takes
    ``vae`` (a separate VAE file) here, so a checkpoint without a baked-in VAE loads."""
    if source.kind == "single_file":
        if source.tokenizers is None:
            raise catalog.ModelNotAvailable(missing_tokenizers_message(source.models_dir))
        assert source.config_dir is not None  # single files always come with the shipped configs
        parts = single_file.load_single_file(source.location, source.config_dir, dtype, vae)
        parts["tokenizer"], parts["tokenizer_2"] = load_tokenizers(*source.tokenizers)
        parts["scheduler_config"] = single_file.read_config(source.config_dir, "scheduler")
        parts["prediction"] = checkpoint_prediction(source.location)
        return parts
    return _load_pretrained(source.location, dtype, variant, local=source.kind == "folder")


def checkpoint_prediction(path: str | Path) -> Optional[prediction.Prediction]:
    """The ``v_pred`` / ``ztsnr`` markers of a single-file checkpoint, from its header alone: the shipped
    SDXL scheduler config says epsilon, which paints garbage with a v-prediction fine-tune."""
    from backend.models.weight_files import read_header

    return prediction.detect(read_header(path))


def scheduler_config_for(parts: dict[str, Any], choice: str) -> tuple[dict, prediction.Prediction]:
    """The scheduler config the pipeline builds every sampler from, carrying the prediction type and zero
    terminal SNR (forced by ``choice``, else the checkpoint's markers, else the config's own)."""
    chosen = prediction.resolve(parts["scheduler_config"], parts.get("prediction"), choice)
    return prediction.apply(parts["scheduler_config"], chosen), chosen


def missing_tokenizers_message(models_dir: Optional[Path]) -> str:
    """What to do when a single-file checkpoint finds no tokenizer, naming the folders that were searched."""
    from huggingface_hub import constants

    if models_dir is not None:
        place = f"copy the `tokenizer/` and `tokenizer_2/` folders of the SDXL repo into {Path(models_dir, 'sdxl_tokenizers')}"
        comfy = f" (or keep {Path(models_dir).resolve().parent / 'comfy' / 'sd1_tokenizer'}, as a ComfyUI install has)"
    else:
        place = ("pass --models-dir DIR with the `tokenizer/` and `tokenizer_2/` folders of the SDXL repo in "
                 "DIR/sdxl_tokenizers")
        comfy = ""
    return ("the SDXL tokenizers are not on this machine (a single-file checkpoint does not include them; searched "
            f"{'--models-dir ' + str(models_dir) + ' and ' if models_dir else ''}the Hugging Face cache "
            f"{constants.HF_HUB_CACHE}): run `layerfusion models download sdxl-tokenizers` once (about 3 MB), "
            f"or {place}{comfy}")


# SDXL's text encoders see 77 tokens; some tokenizer folders (ComfyUI's) say 8192.
TOKENS = 77


def load_tokenizers(first: Path, second: Optional[Path]) -> tuple[Any, Any]:
    """SDXL's two tokenizers. Without a second folder it is the first with OpenCLIP's pad token "!"
    (SDXL's tokenizer_2 is CLIP-L's vocabulary padded with "!" instead of the end token)."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(first, model_max_length=TOKENS)
    if second is not None:
        return tokenizer, CLIPTokenizer.from_pretrained(second, model_max_length=TOKENS)
    return tokenizer, CLIPTokenizer.from_pretrained(first, model_max_length=TOKENS, pad_token="!")


def _load_pretrained(location: str, dtype: torch.dtype, variant: Optional[str], local: bool) -> dict[str, Any]:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    only_local = local or catalog.offline()
    common: dict[str, Any] = dict(local_files_only=only_local)

    def weights(cls, subfolder: str):
        try:
            return cls.from_pretrained(location, subfolder=subfolder, torch_dtype=dtype, variant=variant, **common)
        except (OSError, ValueError):
            if variant is None:
                raise
            # Saved or downloaded without the variant (e.g. full-precision files only): take those.
            return cls.from_pretrained(location, subfolder=subfolder, torch_dtype=dtype, **common)

    try:
        parts = {
            "unet": weights(UNet2DConditionModel, "unet"),
            "vae": weights(AutoencoderKL, "vae"),
            "text_encoder": weights(CLIPTextModel, "text_encoder"),
            "text_encoder_2": weights(CLIPTextModelWithProjection, "text_encoder_2"),
            "tokenizer": CLIPTokenizer.from_pretrained(location, subfolder="tokenizer", **common),
            "tokenizer_2": CLIPTokenizer.from_pretrained(location, subfolder="tokenizer_2", **common),
            "scheduler_config": dict(EulerDiscreteScheduler.load_config(location, subfolder="scheduler", **common)),
        }
    except OSError as err:
        hint = ("run `layerfusion models download sdxl` on a machine with internet"
                if only_local and not local else "check the path")
        raise catalog.ModelNotAvailable(f"cannot load the SDXL model from '{location}' ({err}); {hint}") from None
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        parts[name].eval()
    return parts


def resolve_layerdiffuse(options: LoadOptions, architecture: Architecture,
                         tiny_root: Optional[Path] = None) -> layerdiffuse.LayerDiffuseFiles:
    overrides = options.layerdiffuse_files
    found = None
    if options.model != "tiny":
        found = catalog.layerdiffuse_files(Path(options.models_dir) if options.models_dir else None)
    if found is None and architecture is TINY:
        from backend.models.tiny_files import ensure_tiny_files

        found = layerdiffuse.find_files(ensure_tiny_files(tiny_root).layer_model)
    attn = overrides.get("attn") or (found.attn if found else None)
    decoder = overrides.get("decoder") or (found.decoder if found else None)
    if attn is None or decoder is None:
        from huggingface_hub import constants

        hub = f"the Hugging Face cache {constants.HF_HUB_CACHE}"
        looked = (f"{Path(options.models_dir, 'layer_model').absolute()} and {hub}" if options.models_dir
                  else f"{hub}; no --models-dir given")
        raise catalog.ModelNotAvailable(
            f"the LayerDiffuse SDXL files are not on this machine (looked in {looked}): run "
            "`layerfusion models download sdxl`, or point --models-dir at a "
            "ComfyUI models folder that has layer_model/layer_xl_transparent_attn.safetensors and "
            "layer_model/vae_transparent_decoder.safetensors")
    encoder = overrides.get("encoder") or (found.encoder if found else None)
    return layerdiffuse.LayerDiffuseFiles(Path(attn), Path(decoder), Path(encoder) if encoder else None,
                                          overrides.get("encoder_scale"))


def _sdxl_present(options: LoadOptions) -> bool:
    models_dir = Path(options.models_dir) if options.models_dir else None
    return catalog.sdxl_base_available(models_dir) and (bool(options.layerdiffuse_files.get("attn")) or catalog.layerdiffuse_files(models_dir) is not None)


def load_bundle(options: LoadOptions, *, tiny_root: Optional[Path] = None) -> ModelBundle:
    """Everything the pipeline needs, checked strictly, on ``options.device`` (or kept in RAM with
    ``cpu_offload``); logs the device and dtype it chose."""
    prediction.check_choice(options.prediction)  # a bad value fails before minutes of loading
    device = resolve_device(options.device)
    dtype = resolve_dtype(device, options.dtype)
    if options.allow_download and options.model == "sdxl" and not _sdxl_present(options):
        from backend.models.download import download

        download("sdxl")
    source, architecture = resolve_base(options, tiny_root)
    files = resolve_layerdiffuse(options, architecture, tiny_root)
    log.info("loading %s (%s %s) on %s in %s", options.model, source.kind, source.location, device, dtype)
    parts = load_base(source, dtype, options.variant, options.vae)
    scheduler_config, chosen = scheduler_config_for(parts, options.prediction)
    log.info("prediction: %s", chosen.describe())
    if options.vae and source.kind != "single_file":  # a single file took it in load_base
        parts["vae"] = single_file.load_vae_file(options.vae, dict(parts["vae"].config), dtype)
    decoder_channels, encoder_channels = channels_for(architecture is TINY)
    # The dense layout's factorisation runs on the GPU when there is one (seconds instead of minutes).
    from backend.models.tiny_files import cache_root

    attn = layerdiffuse.load_attention(files.attn, parts["unet"], options.attn_rank, device, cache_root())
    attn.check_against(parts["unet"])
    decoder = layerdiffuse.load_decoder(files.decoder, decoder_channels, architecture.latent_level, dtype)
    encoder, scale = layerdiffuse.load_optional_encoder(files, encoder_channels, dtype)  # warns when unusable
    if encoder is None:
        # Without the encoder file, re-blend cannot encode a foreground; a zero offset keeps the VAE latent.
        encoder, scale, files.encoder = TransparentVAEEncoder(encoder_channels).to(dtype).eval(), 1.0, None
    if options.vae_tiling:
        parts["vae"].enable_tiling()
    target = torch.device("cpu") if options.cpu_offload else device
    modules = {name: parts[name].to(target) for name in ("unet", "vae", "text_encoder", "text_encoder_2")}
    for module in (*modules.values(), decoder, encoder):
        module.eval().requires_grad_(False)
    bundle = ModelBundle(
        name=options.model, architecture=architecture, **modules,
        tokenizer=parts["tokenizer"], tokenizer_2=parts["tokenizer_2"], scheduler_config=scheduler_config,
        transparent_attn=attn.to(target, dtype), transparent_decoder=decoder.to(target),
        transparent_encoder=encoder.to(target), transparent_encoder_scale=scale, device=device, dtype=dtype,
        cpu_offload=options.cpu_offload, vae_tiling=options.vae_tiling, attention_slicing=options.attention_slicing,
        sources={"base": f"{source.kind}: {source.location}", "vae": options.vae or "base", "attn": str(files.attn), "decoder": str(files.decoder),
                 "encoder": str(files.encoder) if files.encoder else "none", "prediction": chosen.describe()},
    )
    log.info("loaded %s on %s", options.model, bundle.describe_device())
    return bundle
