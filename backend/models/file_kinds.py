"""What a weight file is, from its tensor names alone: LayerDiffuse's parts, an SDXL checkpoint, a
diffusers or transformers component. Loading and the checks of ``models check`` ask here before they
read a tensor."""
from __future__ import annotations

import re
from typing import Mapping

from backend.models import ldm_names
from backend.models.weight_files import TensorInfo

# The transparent-attention projections, the weight offsets of which the dense diffusers file holds.
DENSE_KEY = re.compile(r"\.attn[12]\.to_(q|k|v|out\.0)\.weight$")

# What ``identify`` can answer.
FORMATS = {
    "layerdiffuse-attn-lora": "LayerDiffuse transparent attention, original LoRA layout",
    "layerdiffuse-attn-dense": "LayerDiffuse transparent attention, diffusers dense offsets",
    "layerdiffuse-decoder": "LayerDiffuse transparent VAE decoder",
    "layerdiffuse-encoder": "LayerDiffuse transparent VAE encoder",
    "layerdiffuse-conditional": "LayerDiffuse conditional layer model (not used by LayerFusion)",
    "sdxl-original": "SDXL checkpoint, original (A1111/ComfyUI) layout",
    "diffusers-unet": "diffusers UNet weights",
    "diffusers-vae": "diffusers VAE weights",
    "vae-original": "VAE in the original layout (ComfyUI vae/ folder)",
    "transformers-clip-text": "CLIP text encoder weights (transformers)",
    "unknown": "not a format LayerFusion knows",
}


def identify(header: Mapping[str, TensorInfo]) -> str:
    """The format of a safetensors file, from its tensor names alone."""
    names = [k for k in header if k != "__metadata__"]
    if not names:
        return "unknown"
    if all("::lora::" in k for k in names):
        return "layerdiffuse-attn-lora"
    if any("::diff::" in k for k in names):
        return "layerdiffuse-conditional"
    if "latent_conv_in.weight" in header:
        return "layerdiffuse-decoder"
    if all(re.fullmatch(r"blocks\.\d+\.(weight|bias)", k) for k in names):
        return "layerdiffuse-encoder"
    if ldm_names.is_original_sdxl(set(names)):
        return "sdxl-original"
    if "conv_in.weight" in header and any(k.startswith("down_blocks.") for k in names):
        return "diffusers-unet"
    # By majority, after the UNet test (a whole UNet is mostly other tensors): one stray tensor (a bias,
    # a metadata tensor) must not make the file "unknown"; validate_attention then names it.
    if 2 * sum(bool(DENSE_KEY.search(k)) for k in names) > len(names):
        return "layerdiffuse-attn-dense"
    if "encoder.conv_in.weight" in header and "decoder.conv_out.weight" in header:
        # ComfyUI's vae/ files (e.g. sdxl_vae.safetensors) use the original block names.
        return "vae-original" if any(k.startswith("encoder.down.") for k in names) else "diffusers-vae"
    if any(k.startswith("text_model.encoder.layers.") for k in names):
        return "transformers-clip-text"
    return "unknown"
