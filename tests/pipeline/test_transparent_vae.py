"""The transparent VAE modules: published parameter layout, TTA, padding, RGB padding for the encoder."""
import torch

from backend.models.transparent_vae import (
    FULL_DECODER_CHANNELS,
    FULL_ENCODER_CHANNELS,
    TINY_DECODER_CHANNELS,
    TransparentVAEDecoder,
    TransparentVAEEncoder,
    decode_rgba,
    pad_rgb,
)


def test_full_size_modules_match_published_files():
    with torch.device("meta"):
        decoder = TransparentVAEDecoder(FULL_DECODER_CHANNELS)
        encoder = TransparentVAEEncoder(FULL_ENCODER_CHANNELS)
    sd = decoder.state_dict()
    assert (len(sd), sum(t.numel() for t in sd.values())) == (538, 104_104_804)
    assert sd["up_blocks.0.resnets.0.conv1.weight"].shape == (512, 1024, 3, 3)
    assert sd["down_blocks.6.attentions.1.to_q.weight"].shape == (512, 512)
    assert sd["latent_conv_in.weight"].shape == (64, 4, 1, 1)
    esd = encoder.state_dict()
    assert (len(esd), sum(t.numel() for t in esd.values())) == (18, 1_181_764)
    assert sorted({k.split(".")[1] for k in esd}, key=int) == [str(i) for i in range(0, 18, 2)]


class Flipper(torch.nn.Module):
    """A decoder that is not rotation-equivariant: its alpha is the x coordinate of each pixel."""

    def forward(self, pixel, latent):
        h, w = pixel.shape[-2:]
        x = torch.linspace(0, 1, w).expand(pixel.shape[0], 1, h, w)
        return torch.cat([x, pixel], dim=1)


def test_decode_rgba_reorders_channels_and_tta_takes_median():
    pixel = torch.rand(1, 3, 64, 64)
    out = decode_rgba(Flipper(), pixel, torch.zeros(1, 4, 8, 8), tta=False)
    assert torch.allclose(out[:, :3], pixel) and torch.allclose(out[0, 3, 0], torch.linspace(0, 1, 64))
    tta = decode_rgba(Flipper(), pixel, torch.zeros(1, 4, 8, 8), tta=True)
    # The 8 restored alphas are x, 1-x, y, 1-y (twice each); the lower median per pixel is computable.
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    stack = torch.stack([xs, 1 - xs, ys, 1 - ys] * 2)
    assert torch.allclose(tta[0, 3], stack.median(dim=0).values, atol=1e-6)
    assert torch.allclose(tta[:, :3], pixel)  # colour passes through every variant unchanged


def test_decode_pads_to_64_and_crops_back():
    torch.manual_seed(0)
    decoder = TransparentVAEDecoder(TINY_DECODER_CHANNELS)
    out = decode_rgba(decoder, torch.rand(2, 3, 72, 40), torch.randn(2, 4, 9, 5), tta=False)
    assert out.shape == (2, 4, 72, 40) and out.min() >= 0 and out.max() <= 1


def test_pad_rgb_keeps_visible_and_fills_invisible():
    rgb = torch.zeros(1, 3, 16, 16)
    rgb[:, 0, :8] = 1.0  # red where visible
    rgb[:, 2, 8:] = 1.0  # blue garbage where invisible
    alpha = torch.zeros(1, 1, 16, 16)
    alpha[..., :8, :] = 1.0
    padded = pad_rgb(rgb, alpha)
    assert torch.allclose(padded[..., :8, :], rgb[..., :8, :], atol=1e-6)
    # The only visible colour is red, so the fill is red too.
    red = torch.tensor([1.0, 0, 0]).reshape(1, 3, 1, 1).expand(1, 3, 8, 16)
    assert torch.allclose(padded[..., 8:, :], red, atol=1e-5)


def test_tiny_decoder_has_every_published_key_name():
    with torch.device("meta"):
        full = TransparentVAEDecoder(FULL_DECODER_CHANNELS).state_dict()
        tiny = TransparentVAEDecoder(TINY_DECODER_CHANNELS).state_dict()
    assert list(tiny) == list(full)
