"""LayerDiffuse's transparent VAE: the decoder that turns (VAE RGB, latent) into RGBA, and the encoder
that turns an RGBA back into a latent offset (METHOD.md sections 2.3 and 2.4).

Parameter names follow the published files exactly, so ``load_state_dict(strict=True)`` works on them;
the tiny model uses the same modules with narrower channels.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block
from torch import nn

FULL_DECODER_CHANNELS = (32, 32, 64, 128, 256, 512, 512)
TINY_DECODER_CHANNELS = (8, 8, 16, 24, 32, 40, 40)  # every published key name, at tiny width
FULL_ENCODER_CHANNELS = (32, 64, 128, 256)
TINY_ENCODER_CHANNELS = (8, 16, 16, 32)

def channels_for(tiny: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(decoder, encoder) widths: the published ones, or the tiny model's."""
    if tiny:
        return TINY_DECODER_CHANNELS, TINY_ENCODER_CHANNELS
    return FULL_DECODER_CHANNELS, FULL_ENCODER_CHANNELS


# Six 2x downsamplings in the decoder: inputs must be a multiple of this.
DECODER_MULTIPLE = 64


class TransparentVAEDecoder(nn.Module):
    """LayerDiffuse's "UNet1024": a timestep-free 2-D UNet on the decoded RGB whose output is
    (alpha, straight RGB). The latent enters through a 1x1 convolution at the level where the
    hidden state has the latent's resolution."""

    def __init__(
        self,
        block_out_channels: Sequence[int] = FULL_DECODER_CHANNELS,
        *,
        norm_num_groups: int = 4,
        attention_head_dim: int = 8,
        latent_channels: int = 4,
        latent_level: int = 3,
    ):
        super().__init__()
        channels = tuple(block_out_channels)
        if len(channels) != 7:
            raise ValueError("the transparent decoder has seven levels")
        self.latent_level = latent_level
        block: dict[str, Any] = dict(temb_channels=None, resnet_eps=1e-5, resnet_act_fn="silu",
                     resnet_groups=norm_num_groups, attention_head_dim=attention_head_dim,
                     resnet_time_scale_shift="default", dropout=0.0)
        self.conv_in = nn.Conv2d(3, channels[0], kernel_size=3, padding=1)
        self.latent_conv_in = nn.Conv2d(latent_channels, channels[latent_level - 1], kernel_size=1)
        nn.init.zeros_(self.latent_conv_in.weight)
        assert self.latent_conv_in.bias is not None  # Conv2d's default bias=True
        nn.init.zeros_(self.latent_conv_in.bias)

        self.down_blocks = nn.ModuleList()
        previous = channels[0]
        for i, out in enumerate(channels):
            kind = "AttnDownBlock2D" if i >= 4 else "DownBlock2D"
            self.down_blocks.append(get_down_block(
                kind, num_layers=2, in_channels=previous, out_channels=out,
                add_downsample=i < len(channels) - 1, downsample_padding=1, downsample_type="conv",
                **block))
            previous = out
        self.mid_block = UNetMidBlock2D(
            # temb_channels=None: no time embedding (diffusers annotates it int but accepts None).
            in_channels=channels[-1], temb_channels=None, dropout=0.0, resnet_eps=1e-5,  # type: ignore[arg-type]
            resnet_act_fn="silu", output_scale_factor=1, resnet_time_scale_shift="default",
            attention_head_dim=attention_head_dim, resnet_groups=norm_num_groups, add_attention=True)

        self.up_blocks = nn.ModuleList()
        reversed_channels = channels[::-1]
        previous = reversed_channels[0]
        for i, out in enumerate(reversed_channels):
            skip = reversed_channels[min(i + 1, len(channels) - 1)]
            kind = "AttnUpBlock2D" if i < 3 else "UpBlock2D"
            self.up_blocks.append(get_up_block(
                kind, num_layers=3, in_channels=skip, out_channels=out, prev_output_channel=previous,
                add_upsample=i < len(channels) - 1, upsample_type="conv", **block))
            previous = out
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, channels[0], eps=1e-5)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[0], 4, kernel_size=3, padding=1)

    def forward(self, pixel: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """``pixel`` [B,3,H,W] in [0,1]; ``latent`` [B,4,H/8,W/8] in raw VAE units. Returns raw
        [B,4,H,W] (alpha first), unclipped."""
        injected = self.latent_conv_in(latent)
        sample = self.conv_in(pixel)
        skips = (sample,)
        for i, down in enumerate(self.down_blocks):
            if i == self.latent_level:
                sample = sample + injected
            sample, residuals = down(hidden_states=sample, temb=None)
            skips += residuals
        sample = self.mid_block(sample, None)
        for up in self.up_blocks:
            resnets: Any = up.resnets
            count = len(resnets)
            sample = up(sample, skips[-count:], None)
            skips = skips[:-count]
        return self.conv_out(self.conv_act(self.conv_norm_out(sample)))


class TransparentVAEEncoder(nn.Module):
    """RGBA → latent offset: a plain 3x3 conv stack with three stride-2 steps (8x down)."""

    def __init__(self, channels: Sequence[int] = FULL_ENCODER_CHANNELS, *, latent_channels: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        previous = 4
        for level, width in enumerate(channels):
            layers += [nn.Conv2d(previous, width, 3, padding=1, stride=1 if level == 0 else 2), nn.SiLU(),
                       nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
            previous = width
        out = nn.Conv2d(previous, latent_channels, 3, padding=1)
        nn.init.zeros_(out.weight)
        assert out.bias is not None  # Conv2d's default bias=True
        nn.init.zeros_(out.bias)
        self.blocks = nn.Sequential(*layers, out)

    def forward(self, alpha_rgb: torch.Tensor) -> torch.Tensor:
        return self.blocks(alpha_rgb)


# --- decoding -----------------------------------------------------------------------------------------

def _augment(x: torch.Tensor, flip: bool, turns: int) -> torch.Tensor:
    if flip:
        x = torch.flip(x, dims=(3,))
    return torch.rot90(x, k=turns, dims=(2, 3))


def _restore(x: torch.Tensor, flip: bool, turns: int) -> torch.Tensor:
    x = torch.rot90(x, k=-turns, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if flip else x


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


@torch.no_grad()
def decode_rgba(decoder: TransparentVAEDecoder, pixel: torch.Tensor, latent: torch.Tensor, *,
                tta: bool = True) -> torch.Tensor:
    """(VAE RGB in [0,1], raw latent) → RGBA [B,4,H,W] in [0,1], straight colour, alpha last.

    Inputs of any multiple of 8 are padded (edge pixels repeated) to the decoder's multiple of 64 and
    cropped back. ``tta`` takes the per-element median of the 8 flip/rotation variants."""
    height, width = pixel.shape[-2:]
    factor = height // latent.shape[-2]
    pixel_p = _pad_to(pixel, DECODER_MULTIPLE)
    latent_p = _pad_to(latent, DECODER_MULTIPLE // factor)
    variants = [(flip, turns) for flip in (False, True) for turns in range(4)] if tta else [(False, 0)]
    outputs = []
    for flip, turns in variants:
        y = decoder(_augment(pixel_p, flip, turns), _augment(latent_p, flip, turns)).clip(0, 1)
        outputs.append(_restore(y, flip, turns))
    out = outputs[0] if len(outputs) == 1 else torch.stack(outputs).median(dim=0).values
    out = out[..., :height, :width]
    return torch.cat([out[:, 1:], out[:, :1]], dim=1)


# --- encoding -----------------------------------------------------------------------------------------

def pad_rgb(rgb: torch.Tensor, alpha: torch.Tensor, *, ratio: float = 1.2) -> torch.Tensor:
    """Fill invisible pixels with colours smoothly extended from the visible ones (METHOD.md 2.4).

    A pyramid of premultiplied colour and alpha, area-downscaled by ``ratio`` until a side is one pixel;
    from the alpha-weighted mean at the top, each level is colour + upsampled colour × (1 − alpha)."""
    premultiplied = rgb * alpha
    levels = [(premultiplied, alpha)]
    h, w = rgb.shape[-2:]
    while min(h, w) > 1:
        h, w = max(1, int(h / ratio)), max(1, int(w / ratio))
        levels.append((F.interpolate(premultiplied, size=(h, w), mode="area"),
                       F.interpolate(alpha, size=(h, w), mode="area")))
    weight = alpha.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    fill = premultiplied.sum(dim=(2, 3), keepdim=True) / weight
    for colour, a in reversed(levels):
        fill = F.interpolate(fill, size=colour.shape[-2:], mode="bilinear", align_corners=False)
        fill = colour + fill * (1 - a)
    return fill.clip(0, 1)


@torch.no_grad()
def encode_rgba(vae, encoder: TransparentVAEEncoder, rgba: torch.Tensor, *, offset_scale: float = 1.0,
                ) -> torch.Tensor:
    """RGBA [B,4,H,W] in [0,1] (alpha last) → diffusion latent (scaled by the VAE's scaling factor).

    The VAE sees the colour premultiplied onto mid-grey; the transparent encoder's output moves the
    posterior mean by that many standard deviations (the "sample" is deterministic)."""
    rgb, alpha = rgba[:, :3], rgba[:, 3:]
    dtype = next(vae.parameters()).dtype
    posterior = vae.encode(((rgb * 2 - 1) * alpha).to(dtype)).latent_dist
    encoder_dtype = next(encoder.parameters()).dtype
    offset = encoder(torch.cat([alpha, pad_rgb(rgb, alpha)], dim=1).to(encoder_dtype)) * offset_scale
    latent = posterior.mean + posterior.std * offset.to(posterior.mean.dtype)
    return latent * vae.config.scaling_factor
