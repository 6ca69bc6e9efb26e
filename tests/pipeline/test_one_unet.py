"""One UNet for all branches: the per-row offsets equal a separately merged UNet."""
import torch

from backend.pipeline.attention import (
    FusionState,
    PriorCapture,
    RowLayout,
    default_prior_block,
    fusion_processors,
    module_deltas,
)
from backend.pipeline.blending import attention_probabilities


def unet_inputs(rows, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(rows, 4, 8, 8, generator=g)
    context = torch.randn(rows, 77, 64, generator=g)
    pooled = torch.randn(rows, 32, generator=g)
    ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]]).repeat(rows, 1)
    return sample, dict(encoder_hidden_states=context, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids})


@torch.no_grad()
def test_row_offsets_equal_merged_unet(tiny_bundle):
    unet, delta = tiny_bundle.unet, tiny_bundle.transparent_attn
    merged = delta.merged_copy(unet)
    sample, kwargs = unet_inputs(3)
    state = FusionState(layout=RowLayout(rows=3, delta_rows=(0, 2)))
    with fusion_processors(unet, state, module_deltas(unet, delta)):
        batched = unet(sample, 500, **kwargs).sample
    plain = unet(sample, 500, **kwargs).sample
    fg = merged(sample, 500, **kwargs).sample
    assert torch.allclose(batched[[0, 2]], fg[[0, 2]], atol=1e-5)
    assert torch.allclose(batched[1], plain[1], atol=1e-5)
    assert not torch.allclose(fg, plain, atol=1e-3)  # the offsets really change the output
    # The processors are gone afterwards: the UNet is plain again.
    assert type(next(iter(unet.attn_processors.values()))).__name__ != "LayerFusionAttnProcessor"


@torch.no_grad()
def test_prior_capture_records_head_mean_probabilities(tiny_bundle):
    unet = tiny_bundle.unet
    block = default_prior_block(unet)
    assert block == "up_blocks.0.attentions.2.transformer_blocks.1"
    sample, kwargs = unet_inputs(2, seed=1)
    capture = PriorCapture(block, armed=True)
    seen = {}

    def spy(module, args, kwargs_, output):  # the attention's own input, to recompute by hand
        seen[module] = (args[0] if args else kwargs_["hidden_states"], kwargs_.get("encoder_hidden_states"))

    modules = dict(unet.named_modules())
    hooks = [modules[f"{block}.{a}"].register_forward_hook(spy, with_kwargs=True) for a in ("attn1", "attn2")]
    eos = 5
    state = FusionState(layout=RowLayout(rows=2, prior_row=1, content_row=1), capture=capture, content={}, eos=eos)
    try:
        with fusion_processors(unet, state, {}):
            unet(sample, 800, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    by_hand = {}
    for name in ("attn1", "attn2"):
        attn = modules[f"{block}.{name}"]
        hidden, context = seen[attn]
        context = hidden if context is None else context
        q = attn.to_q(hidden[1]).reshape(-1, attn.heads, attn.inner_dim // attn.heads).transpose(0, 1)
        k = attn.to_k(context[1]).reshape(-1, attn.heads, attn.inner_dim // attn.heads).transpose(0, 1)
        by_hand[name] = attention_probabilities(q, k, attn.scale)
        assert torch.allclose(by_hand[name].sum(-1), torch.ones(by_hand[name].shape[0]), atol=1e-5)
    assert torch.allclose(capture.self_probs, by_hand["attn1"], atol=1e-6)
    # Cross-attention: every block records its row's probability on the EOS token (c_l).
    assert torch.allclose(state.content[block], by_hand["attn2"][:, eos], atol=1e-6)
    assert capture.self_probs.shape == (16, 16) and state.content[block].shape == (16,)
    assert len(state.content) > 1  # the other blocks too


@torch.no_grad()
def test_attention_slicing_gives_the_same_triplet(tiny_bundle):
    from dataclasses import replace

    from backend.pipeline.layerfusion import SLICE_QUERIES, LayerFusionPipeline

    whole = LayerFusionPipeline.from_bundle(tiny_bundle)
    sliced = LayerFusionPipeline.from_bundle(replace(tiny_bundle, attention_slicing=True))
    assert sliced.attention_chunk == SLICE_QUERIES and whole.attention_chunk is None
    sliced.attention_chunk = 16  # the 64x64 test image has 64 queries at its finest level: 4 slices
    run = lambda pipe: pipe("a", "b", "a, b", height=64, width=64, num_inference_steps=2,  # noqa: E731
                            generator=torch.Generator().manual_seed(0))
    a, b = run(whole), run(sliced)
    assert torch.allclose(a.blend, b.blend, atol=1e-4) and torch.allclose(a.foreground, b.foreground, atol=1e-4)
