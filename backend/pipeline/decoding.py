"""Between latents and pixels: VAE decode/encode, the transparent foreground, alpha compositing."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from backend.models.transparent_vae import decode_rgba, encode_rgba


@contextlib.contextmanager
def vae_precision(vae) -> Iterator[None]:
    """SDXL's VAE overflows in fp16 unless it is the fp16-fix VAE (config ``force_upcast``)."""
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield
    finally:
        if upcast:
            vae.to(torch.float16)


def decode_rgb(vae, latents: torch.Tensor) -> torch.Tensor:
    """Diffusion latents [n, 4, h, w] -> RGB in [0, 1] [n, 3, H, W] (float32), one image at a time."""
    out = []
    with vae_precision(vae):
        for latent in latents:
            raw = latent[None].to(vae.dtype) / vae.config.scaling_factor
            image = vae.decode(raw).sample.float()
            out.append((image / 2 + 0.5).clamp(0, 1))
    return torch.cat(out)


def encode_rgb(vae, images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] [n, 3, H, W] -> diffusion latents, the posterior mean (deterministic)."""
    out = []
    with vae_precision(vae):
        for image in images:
            x = (image[None] * 2 - 1).to(vae.device, vae.dtype)
            out.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out)


def decode_foreground(vae, decoder, latent: torch.Tensor, pixels: torch.Tensor, tta: bool) -> torch.Tensor:
    """The foreground's RGBA [1, 4, H, W] in [0, 1] from its latent and its plain VAE decode."""
    raw = latent[None].float() / vae.config.scaling_factor
    param = next(decoder.parameters())
    with torch.no_grad():
        rgba = decode_rgba(decoder, pixels[None].to(param.device, param.dtype),
                           raw.to(param.device, param.dtype), tta=tta)
    return rgba.float()


def encode_foreground(vae, encoder, rgba: torch.Tensor, offset_scale: float) -> torch.Tensor:
    """The diffusion latent of a transparent foreground [1, 4, H, W] (RGBA in [0, 1])."""
    with vae_precision(vae):
        return encode_rgba(vae, encoder, rgba, offset_scale=offset_scale)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[n, C, H, W] in [0, 1] -> [n, H, W, C] uint8 (round to nearest)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """[H, W, C] uint8 -> [1, C, H, W] float in [0, 1]."""
    return torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1)[None].float() / 255


def to_image(image: torch.Tensor) -> Image.Image:
    """[C, H, W] in [0, 1] -> an RGB or RGBA PIL image."""
    array = to_uint8(image[None])[0]
    return Image.fromarray(array, "RGBA" if array.shape[-1] == 4 else "RGB")


def from_image(image: Image.Image) -> torch.Tensor:
    """An RGB or RGBA PIL image -> [C, H, W] in [0, 1]."""
    return from_uint8(np.asarray(image))[0]


def alpha_over(foreground: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA over RGB, 8 bit: round((a F + (255 - a) B) / 255)."""
    a = foreground[..., 3:4].astype(np.uint32)
    mixed = foreground[..., :3].astype(np.uint32) * a + background[..., :3].astype(np.uint32) * (255 - a)
    return ((mixed + 127) // 255).astype(np.uint8)


def merge_layers(layers: list[np.ndarray]) -> np.ndarray:
    """8-bit straight-alpha RGBA layers, bottom first, merged into one: what they show over anything."""
    premultiplied = np.zeros(layers[0].shape[:2] + (3,))
    alpha = np.zeros(layers[0].shape[:2] + (1,))
    for layer in layers:
        a = layer[..., 3:].astype(np.float64) / 255
        premultiplied = layer[..., :3].astype(np.float64) / 255 * a + premultiplied * (1 - a)
        alpha = a + alpha * (1 - a)
    color = np.divide(premultiplied, alpha, out=np.zeros_like(premultiplied), where=alpha > 0)
    return (np.concatenate([color, alpha], axis=-1) * 255).round().astype(np.uint8)


def map_image(values: torch.Tensor, size: "tuple[int, int]", *, nearest: bool = False) -> Image.Image:
    """A [h, w] map in [0, 1] as a greyscale image of ``size`` (width, height): bilinear for
    continuous maps, nearest for a mask whose edges should stay where the layers saw them."""
    grey = Image.fromarray((values.float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8), "L")
    return grey.resize(size, Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)
