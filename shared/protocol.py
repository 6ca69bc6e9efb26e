"""The LayerFusion wire protocol: every request, response and event the plugin and server exchange.

Field names, states and endpoints follow the team design (DESIGN.md, "HTTP API"). This module is the
single source of truth: the server validates with it and publishes it as OpenAPI, the plugin builds
its requests with it. Standard library only, Python 3.10 (Krita 5.2's).
"""
from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Union

from .fields import ProtocolError, Unprocessable, parse, spec, to_json
from .png import PngInfo, png_info

PROTOCOL_VERSION = "1"
API_PREFIX = "/v1"
# Who sends a job, for fair queueing between artists on a shared server: any short text, a random id
# per plugin session; without it the bearer token (or, with none, one shared queue) is the client.
CLIENT_HEADER = "X-LayerFusion-Client"
MAX_CLIENT_ID = 64
# Not ComfyUI's 8188, A1111's 7860 (nor the 7861+ it falls back to), nor Krita's own ports.
DEFAULT_PORT = 8741
DEFAULT_HOST = "127.0.0.1"

# Limits shared by both sides, so the plugin can refuse what the server would refuse.
MAX_PROMPT_CHARS = 2000
MIN_SIDE = 64
MAX_SIDE = 4096
MAX_PIXELS = 4096 * 2048
SIZE_MULTIPLE = 8
MAX_STEPS = 200
MAX_SEED = 2**32 - 1
MAX_UPLOAD_BYTES = 96 * 1024 * 1024
LAYER_NAMES = ("foreground", "background", "blend")
# What the method saw, kept with every generation as greyscale PNGs at image size.
MAP_NAMES = ("structure_prior", "content_prior", "content_prior_mean", "mask_soft", "mask_hard")
# "Blend as layers": what the blend adds to the plain composite, as multiply and screen layers over the
# background and clipped to the foreground (backend/pipeline/light_layers.py).
LIGHT_NAMES = ("shadows", "light", "foreground_shadows", "foreground_light")
IMAGE_NAMES = LAYER_NAMES + MAP_NAMES + LIGHT_NAMES
# Foreground layers one harmonize job takes (each is one more row in every UNet call).
MAX_FOREGROUNDS = 4
# The smallest object area add_foreground generates for: 4 x 4 latent pixels.
MIN_TARGET_SIDE = 32
# LoRAs per job, and how far a strength may go either way (beyond 4 every known LoRA paints garbage).
MAX_LORAS = 8
MAX_LORA_STRENGTH = 4.0
MAX_LORA_NAME_CHARS = 500
# The team's reading of "clearly sharp" (METHOD.md 1.5, 5) until calibrated on real SDXL.
DEFAULT_BOUNDARY_COEFFICIENT = 16.0


class JobKind(str, enum.Enum):
    generate = "generate"
    reblend = "reblend"
    add_foreground = "add_foreground"  # an object generated into the artist's canvas
    add_background = "add_background"  # a background generated behind the artist's RGBA layer
    harmonize = "harmonize"  # a blend of the artist's RGBA layers over their background


class JobState(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.done, JobState.failed, JobState.cancelled)


class ServerState(str, enum.Enum):
    loading = "loading"
    ready = "ready"
    error = "error"


class BlendMode(str, enum.Enum):
    generative = "generative"  # the harmonised third branch (attention-level blending)
    alpha = "alpha"  # foreground RGBA composited over the background
    none = "none"  # only the two layers


class Phase(str, enum.Enum):
    prior = "prior"  # the restart prior pass (the foreground's attention read, then rewound)
    denoise = "denoise"  # the denoising steps; after the last one the server decodes the latents


class MaskSource(str, enum.Enum):
    product = "product"  # structure prior x content prior: both must agree
    self_attention = "self"  # structure prior only (ablation)
    cross_attention = "cross"  # content-confidence prior only (ablation)


class PriorMode(str, enum.Enum):
    restart = "restart"  # short foreground-only pass to t = 0.8T, then the full run
    online = "online"  # priors from the joint run itself; steps before 0.8T stay unblended


class AttentionBlend(str, enum.Enum):
    shared = "shared"  # blend queries attend to FG keys inside the mask, BG keys outside
    output_mix = "output_mix"  # mix the FG and BG attention outputs
    joint_softmax = "joint_softmax"  # one softmax over FG and BG keys with mask logit biases


class ContentPrior(str, enum.Enum):
    layerwise = "layerwise"  # each blended layer's own cross-attention (the paper's c_l)
    prior_block = "prior_block"  # one map from the prior block at the prior step, for every layer


class Interaction(str, enum.Enum):
    fused = "fused"  # the method: three branches denoised together, every blend mode
    independent = "independent"  # baseline: foreground and background alone, no blend branch


class Sampler(str, enum.Enum):
    euler = "euler"
    dpmpp_2m_karras = "dpmpp_2m_karras"
    # What step-distilled models were trained with (the fast presets pick one; a request may too).
    euler_trailing = "euler_trailing"  # Euler on trailing timesteps: SDXL-Lightning
    euler_ancestral_trailing = "euler_ancestral_trailing"  # SDXL-Turbo
    lcm = "lcm"  # LCM-LoRA, DMD2
    tcd = "tcd"  # Hyper-SD


class Speed(str, enum.Enum):
    quality = "quality"  # the model as loaded, with the request's sampler, steps and guidance
    fast = "fast"  # the server's step-distilled preset: its LoRA or distilled checkpoint, sampler, guidance


@dataclass
class MethodOptions:
    """LayerFusion's knobs. The defaults are the team's (METHOD.md section 5)."""

    # Fields that were replaced: a request that still sends one is told what to send instead.
    RENAMED = {"boundary": "threshold", "softness": "boundary_coefficient"}

    mask_source: MaskSource = spec(MaskSource.product, doc="Which generative prior(s) build the mask.")
    threshold: float = spec(0.5, minimum=0.0, maximum=1.0, doc="Mask threshold tau on the combined prior.")
    boundary_coefficient: float = spec(
        DEFAULT_BOUNDARY_COEFFICIENT,
        exclusive_minimum=0.0,
        allow_inf=True,
        doc="Soft decision boundary coefficient k: hard mask = sigmoid(k (x - tau)); higher = sharper, "
        "lower leaks into the foreground; \"inf\" = a step.",
    )
    content_prior: ContentPrior = spec(
        ContentPrior.layerwise, doc="Content-confidence prior per blended layer, or one from the prior block."
    )
    interaction: Interaction = spec(
        Interaction.fused, doc="fused: the method; independent: two plain branches, no blend (a baseline)."
    )
    prior_mode: PriorMode = spec(PriorMode.restart, doc="How the priors are extracted.")
    prior_timestep: float = spec(
        0.8, exclusive_minimum=0.0, maximum=1.0, doc="Where the priors are read, as a fraction of T."
    )
    prior_layer: Optional[str] = spec(
        None,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.]+$",
        doc="Transformer block whose attn1/attn2 give the priors; the model's default when unset.",
    )
    attention_blend: AttentionBlend = spec(AttentionBlend.shared, doc="How the blend row mixes attention.")
    foreground_update: bool = spec(
        True, doc="Let the foreground row take the blend's attention inside the hard mask."
    )
    sampler: Sampler = spec(Sampler.euler, doc="Denoising scheduler.")
    transparent_tta: Optional[bool] = spec(
        None, doc="8-way median test-time augmentation in the transparent decoder; unset = on for GPU only."
    )


@dataclass
class LoraChoice:
    """One LoRA applied to a job: to the UNet and both text encoders, in every branch."""

    name: str = spec(
        nonblank=True, max_length=MAX_LORA_NAME_CHARS,
        doc="The LoRA as GET /v1/models lists it: its path under a LoRA folder, e.g. 'styles/ink.safetensors'.",
    )
    strength: float = spec(
        1.0, minimum=-MAX_LORA_STRENGTH, maximum=MAX_LORA_STRENGTH,
        doc="Scale of the LoRA's offsets: 1 as trained, 0 off, negative pushes away from it.",
    )


BLEND_LAYERS_DOC = (
    "Also return the blend as layers: 'shadows' (multiply) and 'light' (screen) over the background, "
    "'foreground_shadows' and 'foreground_light' clipped to the foreground; with them shown the stack "
    "reproduces the blend, hidden it is the plain composite."
)
LORAS_DOC = "LoRAs applied to this job, in order; none = the model alone. A name may appear once."
SPEED_DOC = (
    "quality: the model as loaded. fast: a step-distilled preset (Health.fast says which) that picks the "
    "sampler and guidance it was distilled for (options.sampler and guidance are then not used); steps must "
    "lie within the preset's range."
)


def check_loras(loras: "List[LoraChoice]", prefix: str = "") -> None:
    seen = set()
    for i, lora in enumerate(loras):
        if lora.name in seen:
            raise Unprocessable(
                "invalid_field", "LoRA '%s' is listed twice: give it once, with the summed strength" % lora.name,
                "%sloras[%d].name" % (prefix, i),
            )
        seen.add(lora.name)


@dataclass(kw_only=True)
class JobSettings:
    """What every job takes besides its images and prompts (keyword-only, so each kind lists its own
    required fields first)."""

    blend_prompt: str = spec(
        "", max_length=MAX_PROMPT_CHARS, doc="Prompt of the blend; empty = the job's prompts joined."
    )
    negative_prompt: str = spec("", max_length=MAX_PROMPT_CHARS, doc="What the generated images should not show.")
    steps: int = spec(
        25, minimum=1, maximum=MAX_STEPS,
        doc="Denoising steps of a full schedule; a job with a strength runs strength x steps of them.",
    )
    guidance: float = spec(7.0, minimum=0.0, maximum=30.0, doc="Classifier-free guidance scale; <= 1 disables it.")
    seed: Optional[int] = spec(None, minimum=0, maximum=MAX_SEED, doc="Random seed; unset = a random one.")
    loras: List[LoraChoice] = spec(default_factory=list, max_items=MAX_LORAS, doc=LORAS_DOC)
    options: MethodOptions = spec(default_factory=MethodOptions, doc="Method options.")
    blend_layers: bool = spec(False, doc=BLEND_LAYERS_DOC)
    speed: Speed = spec(Speed.quality, doc=SPEED_DOC)
    fast_lora: Optional[str] = spec(
        None, nonblank=True, max_length=MAX_LORA_NAME_CHARS,
        doc="With speed 'fast': the step-distilled LoRA to use, as GET /v1/models lists it (its name says "
        "which distillation it is: lightning, hyper, dmd2 or lcm); unset = the server's preset.",
    )

    def check_settings(self, prefix: str) -> None:
        check_loras(self.loras, prefix)
        if self.fast_lora is not None and self.speed is not Speed.fast:
            raise Unprocessable("invalid_field", "fast_lora is used only with speed 'fast'", prefix + "fast_lora")


@dataclass
class GenerateRequest(JobSettings):
    """Generate a foreground (RGBA), a background (RGB) and, unless blend is none, a blend."""

    foreground_prompt: str = spec(nonblank=True, max_length=MAX_PROMPT_CHARS, doc="What the foreground object is.")
    background_prompt: str = spec(nonblank=True, max_length=MAX_PROMPT_CHARS, doc="The scene behind it.")
    width: int = spec(
        minimum=MIN_SIDE, maximum=MAX_SIDE, multiple_of=SIZE_MULTIPLE, doc="Image width in pixels."
    )
    height: int = spec(
        minimum=MIN_SIDE, maximum=MAX_SIDE, multiple_of=SIZE_MULTIPLE, doc="Image height in pixels."
    )
    kind: JobKind = spec(JobKind.generate, const=True, doc="Always 'generate'.")
    blend: BlendMode = spec(BlendMode.generative, doc="How the blend layer is made.")

    def check(self, prefix: str = "") -> None:
        check_size(self.width, self.height, prefix)
        if self.blend_layers and self.blend is not BlendMode.generative:
            raise Unprocessable(
                "invalid_field", "blend_layers splits the generative blend: ask for blend 'generative'",
                prefix + "blend_layers",
            )
        self.check_settings(prefix)
        if self.options.interaction is Interaction.independent and self.blend is BlendMode.generative:
            raise Unprocessable(
                "invalid_field",
                "options.interaction 'independent' runs no blend branch: ask for blend 'alpha' or 'none', "
                "or interaction 'fused'",
                prefix + "options.interaction",
            )

    @property
    def size(self) -> "tuple[int, int]":
        return self.width, self.height

    def uploads(self) -> "Dict[str, str]":
        return {}


@dataclass
class Rect:
    """A rectangle in an image's pixels, from its top-left corner."""

    x: int = spec(minimum=0, doc="Left edge.")
    y: int = spec(minimum=0, doc="Top edge.")
    width: int = spec(minimum=1, doc="Width.")
    height: int = spec(minimum=1, doc="Height.")


@dataclass
class ReblendRequest(JobSettings):
    """Re-harmonise the blend after the foreground moved: the layers as they now lie on the canvas."""

    foreground_png: str = spec(
        nonblank=True, doc="Base64 PNG, RGBA: the foreground as it now lies on the canvas.", write_only=True
    )
    background_png: str = spec(
        nonblank=True, doc="Base64 PNG, RGB or RGBA (alpha ignored), the same size.", write_only=True
    )
    foreground_prompt: str = spec(nonblank=True, max_length=MAX_PROMPT_CHARS, doc="The foreground's prompt.")
    background_prompt: str = spec(nonblank=True, max_length=MAX_PROMPT_CHARS, doc="The background's prompt.")
    kind: JobKind = spec(JobKind.reblend, const=True, doc="Always 'reblend'.")
    strength: float = spec(
        0.5, exclusive_minimum=0.0, maximum=1.0, doc="How far the blend is re-noised: the share of steps re-run."
    )
    previous_blend_png: Optional[str] = spec(
        None, nonblank=True,
        doc="Base64 PNG, RGB, the same size: the blend now on the canvas. With 'changed' the re-blend is "
        "local: only the region the move affected is denoised and the rest of this blend is kept pixel for "
        "pixel. Without them the whole canvas is re-blended.", write_only=True,
    )
    changed: Optional[Rect] = spec(
        None, doc="The pixels the move affected: the union of the foreground's old and new bounds. The "
        "server adds a margin for shadows (1/16 of the longer side) and feathers the seam.",
    )

    def check(self, prefix: str = "") -> None:
        self.check_settings(prefix)
        check_fused(self.options, prefix, "a re-blend")
        uploads = [(prefix + "background_png", self.background_png, "color"),
                   (prefix + "foreground_png", self.foreground_png, "RGBA")]
        if (self.previous_blend_png is None) != (self.changed is None):
            missing = "previous_blend_png" if self.previous_blend_png is None else "changed"
            raise Unprocessable("invalid_field", "a local re-blend needs both previous_blend_png and changed",
                                prefix + missing)
        if self.previous_blend_png is not None:
            uploads.append((prefix + "previous_blend_png", self.previous_blend_png, "color"))
        size = check_uploads(uploads)
        check_size(*size, prefix, field="foreground_png")
        if self.changed is not None:
            check_inside(self.changed, size, prefix + "changed", "the changed region")

    @property
    def size(self) -> "tuple[int, int]":
        return png_size(self.foreground_png)

    def uploads(self) -> "Dict[str, str]":
        uploads = {"foreground": self.foreground_png, "background": self.background_png}
        if self.previous_blend_png is not None:
            uploads["previous_blend"] = self.previous_blend_png
        return uploads


@dataclass
class AddForegroundRequest(JobSettings):
    """Generate an object into the artist's picture: a transparent foreground that belongs in the given
    background, and a blend (contact shadows, light, reflections). The background is never altered."""

    background_png: str = spec(
        nonblank=True, write_only=True,
        doc="Base64 PNG, RGB: the canvas the object goes into. Transparency is flattened on white.",
    )
    foreground_prompt: str = spec(nonblank=True, max_length=MAX_PROMPT_CHARS, doc="What the object is.")
    kind: JobKind = spec(JobKind.add_foreground, const=True, doc="Always 'add_foreground'.")
    background_prompt: str = spec(
        "", max_length=MAX_PROMPT_CHARS, doc="What the canvas shows; empty = no description."
    )
    target: Optional[Rect] = spec(
        None, doc="Where the object goes, in the background's pixels; unset = anywhere in the image."
    )

    def check(self, prefix: str = "") -> None:
        self.check_settings(prefix)
        check_fused(self.options, prefix, "adding an object")
        if self.options.prior_mode is not PriorMode.restart:
            raise Unprocessable(
                "invalid_field", "adding an object reads its priors in a restart pass: leave options.prior_mode "
                "'restart'", prefix + "options.prior_mode",
            )
        size = check_uploads([(prefix + "background_png", self.background_png, "color")])
        check_size(*size, prefix, field="background_png")
        if self.target is not None:
            check_target(self.target, size, prefix + "target")

    @property
    def size(self) -> "tuple[int, int]":
        return png_size(self.background_png)

    def uploads(self) -> "Dict[str, str]":
        return {"background": self.background_png}


@dataclass
class AddBackgroundRequest(JobSettings):
    """Generate a background behind the artist's RGBA layer, and their blend; the layer's alpha is the
    mask and its pixels are never altered."""

    foreground_png: str = spec(
        nonblank=True, write_only=True, doc="Base64 PNG, RGBA: the artist's layer, with transparency around it."
    )
    background_prompt: str = spec(nonblank=True, max_length=MAX_PROMPT_CHARS, doc="The scene to put behind it.")
    kind: JobKind = spec(JobKind.add_background, const=True, doc="Always 'add_background'.")
    foreground_prompt: str = spec(
        "", max_length=MAX_PROMPT_CHARS, doc="What the layer shows; empty = no description."
    )

    def check(self, prefix: str = "") -> None:
        self.check_settings(prefix)
        check_fused(self.options, prefix, "adding a background")
        size = check_uploads([(prefix + "foreground_png", self.foreground_png, "RGBA")])
        check_size(*size, prefix, field="foreground_png")

    @property
    def size(self) -> "tuple[int, int]":
        return png_size(self.foreground_png)

    def uploads(self) -> "Dict[str, str]":
        return {"foreground": self.foreground_png}


@dataclass
class LayerUpload:
    """One of the artist's foreground layers."""

    png: str = spec(nonblank=True, write_only=True, doc="Base64 PNG, RGBA, the background's size.")
    prompt: str = spec("", max_length=MAX_PROMPT_CHARS, doc="What the layer shows; empty = no description.")


@dataclass
class HarmonizeRequest(JobSettings):
    """A blend of the artist's RGBA layers over their background: each layer's alpha is its mask, the
    list order is the stacking order (bottom first) and a higher layer wins where they overlap."""

    foregrounds: List[LayerUpload] = spec(
        min_items=1, max_items=MAX_FOREGROUNDS, doc="The foreground layers, bottom first."
    )
    background_png: str = spec(
        nonblank=True, write_only=True,
        doc="Base64 PNG, RGB: the background, the layers' size. Transparency is flattened on white.",
    )
    kind: JobKind = spec(JobKind.harmonize, const=True, doc="Always 'harmonize'.")
    background_prompt: str = spec(
        "", max_length=MAX_PROMPT_CHARS, doc="What the background shows; empty = no description."
    )
    strength: float = spec(
        0.5, exclusive_minimum=0.0, maximum=1.0, doc="How far the composite is re-noised: the share of steps run."
    )

    def check(self, prefix: str = "") -> None:
        self.check_settings(prefix)
        check_fused(self.options, prefix, "harmonizing")
        uploads = [(prefix + "background_png", self.background_png, "color")]
        uploads += [("%sforegrounds[%d].png" % (prefix, i), layer.png, "RGBA")
                    for i, layer in enumerate(self.foregrounds)]
        size = check_uploads(uploads)
        check_size(*size, prefix, field="background_png")

    @property
    def size(self) -> "tuple[int, int]":
        return png_size(self.background_png)

    def uploads(self) -> "Dict[str, str]":
        images = {"background": self.background_png}
        images.update(("foreground%d" % i, layer.png) for i, layer in enumerate(self.foregrounds))
        return images


JobRequest = Union[GenerateRequest, ReblendRequest, AddForegroundRequest, AddBackgroundRequest, HarmonizeRequest]
JOB_REQUESTS = {
    JobKind.generate: GenerateRequest,
    JobKind.reblend: ReblendRequest,
    JobKind.add_foreground: AddForegroundRequest,
    JobKind.add_background: AddBackgroundRequest,
    JobKind.harmonize: HarmonizeRequest,
}


def check_fused(options: MethodOptions, prefix: str, what: str) -> None:
    if options.interaction is not Interaction.fused:
        raise Unprocessable(
            "invalid_field", "%s always fuses its branches: leave options.interaction 'fused'" % what,
            prefix + "options.interaction",
        )


def check_uploads(uploads: "List[tuple[str, str, str]]") -> "tuple[int, int]":
    """Each (field, base64 PNG, 'RGBA' or 'color') a PNG of that kind, all one size; that size."""
    size = None
    first = ""
    for field, text, kind in uploads:
        info = decode_png_field(text, field)
        if kind == "RGBA" and not info.has_alpha:
            raise Unprocessable("invalid_image", "'%s' must be an RGBA PNG; got %s" % (field, info.mode), field)
        if kind == "color" and not info.is_color:
            raise Unprocessable(
                "invalid_image", "'%s' must be an RGB or RGBA PNG; got %s" % (field, info.mode), field
            )
        if size is None:
            size, first = (info.width, info.height), field
        elif (info.width, info.height) != size:
            raise Unprocessable(
                "invalid_image",
                "'%s' is %dx%d but '%s' is %dx%d; they must be the same size"
                % (field, info.width, info.height, first, size[0], size[1]),
                field,
            )
    assert size is not None
    return size


def check_inside(rect: Rect, size: "tuple[int, int]", field: str, what: str) -> None:
    width, height = size
    if rect.x + rect.width > width or rect.y + rect.height > height:
        raise Unprocessable(
            "invalid_field",
            "%s %dx%d at (%d, %d) reaches outside the %dx%d image"
            % (what, rect.width, rect.height, rect.x, rect.y, width, height),
            field,
        )


def check_target(target: Rect, size: "tuple[int, int]", field: str) -> None:
    check_inside(target, size, field, "the target")
    if min(target.width, target.height) < MIN_TARGET_SIDE:
        raise Unprocessable(
            "invalid_field",
            "the target is %dx%d: too small for the model, make it at least %dx%d pixels"
            % (target.width, target.height, MIN_TARGET_SIDE, MIN_TARGET_SIDE),
            field,
        )


def png_size(text: str) -> "tuple[int, int]":
    info = png_info(base64.b64decode(text))
    return info.width, info.height


def check_size(width: int, height: int, prefix: str = "", field: Optional[str] = None) -> None:
    """Sides in [MIN_SIDE, MAX_SIDE], multiples of SIZE_MULTIPLE, at most MAX_PIXELS in all.

    For a generate request the schema already holds the sides to these; the pixel budget and an
    uploaded PNG's size are what it cannot say, hence 422."""
    for name, value in (("width", width), ("height", height)):
        where = prefix + (field or name)
        if value < MIN_SIDE or value > MAX_SIDE:
            raise Unprocessable(
                "invalid_size", "%s %d is outside %d..%d" % (name, value, MIN_SIDE, MAX_SIDE), where
            )
        if value % SIZE_MULTIPLE:
            raise Unprocessable(
                "invalid_size", "%s %d is not a multiple of %d" % (name, value, SIZE_MULTIPLE), where
            )
    if width * height > MAX_PIXELS:
        raise Unprocessable(
            "invalid_size",
            "width x height = %dx%d has more than %d pixels" % (width, height, MAX_PIXELS),
            prefix + (field or "width"),
        )


def decode_png_field(text: str, field: str) -> PngInfo:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable("invalid_image", "'%s' is not valid base64" % field, field) from None
    try:
        return png_info(data)
    except ValueError as err:
        raise Unprocessable("invalid_image", "'%s' is not a usable PNG: %s" % (field, err), field) from None


def parse_job_request(data: Any) -> JobRequest:
    """The request of POST /v1/jobs, validated; ProtocolError names the first bad field."""
    if not isinstance(data, dict):
        raise ProtocolError("invalid_body", "the body must be a JSON object")
    kind = data.get("kind")
    kinds = ", ".join("'%s'" % k.value for k in JobKind)
    if kind is None:
        raise ProtocolError("missing_field", "'kind' is required: one of %s" % kinds, "kind")
    for job_kind, cls in JOB_REQUESTS.items():
        if kind == job_kind.value:
            return parse(cls, data)
    raise ProtocolError("invalid_field", "'kind' must be one of %s; got %r" % (kinds, kind), "kind")


def request_params(request: JobRequest) -> Dict[str, Any]:
    """A request's JSON form without its uploaded images (the write-only fields): what records keep."""
    return _without_uploads(request)


def _without_uploads(obj: Any) -> Any:
    if not hasattr(obj, "__dataclass_fields__"):
        return [_without_uploads(v) for v in obj] if isinstance(obj, list) else to_json(obj)
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is not None and not f.metadata.get("write_only"):
            out[f.name] = _without_uploads(value)
    return out


def compose_blend_prompt(foreground_prompt: str, background_prompt: str, blend_prompt: str = "") -> str:
    """The blend branch's prompt: the user's, else both prompts joined (METHOD.md section 5); an empty
    one (an undescribed layer of the artist's) is left out."""
    if blend_prompt.strip():
        return blend_prompt.strip()
    return ", ".join(p.strip() for p in (foreground_prompt, background_prompt) if p.strip())


# ---- responses and events -------------------------------------------------------------------


@dataclass
class Progress:
    """Denoising progress of a job."""

    step: int = spec(0, minimum=0, doc="Steps done.")
    total: int = spec(0, minimum=0, doc="Steps in all (prior pass included).")
    phase: Phase = spec(Phase.denoise, doc="prior or denoise, as in the progress events.")


@dataclass
class ErrorInfo:
    """Why a request or a job failed."""

    code: str = spec(doc="Machine-readable reason.")
    message: str = spec(doc="Plain-words reason for the artist.")
    field: Optional[str] = spec(None, doc="The request field at fault, dotted.")


@dataclass
class ErrorResponse:
    """Body of every 4xx and 5xx answer."""

    error: ErrorInfo = spec(doc="What went wrong.")


@dataclass
class JobCreated:
    """Answer of POST /v1/jobs."""

    id: str = spec(doc="Job id.")
    state: JobState = spec(doc="Always 'queued'.")


@dataclass
class JobStatus:
    """A job as the server knows it."""

    id: str = spec(doc="Job id.")
    kind: JobKind = spec(doc="generate, reblend, add_foreground, add_background or harmonize.")
    state: JobState = spec(doc="queued, running, done, failed or cancelled.")
    progress: Progress = spec(default_factory=Progress, doc="Denoising progress.")
    params: Dict[str, Any] = spec(
        default_factory=dict, doc="Every parameter of the job as run (seed resolved), images left out."
    )
    error: Optional[ErrorInfo] = spec(None, doc="Why it failed; only when failed.")
    images: Optional[Dict[str, str]] = spec(None, doc="Result image name -> URL path; only when done.")
    queue_position: Optional[int] = spec(None, minimum=0, doc="Jobs ahead of it; only when queued.")
    created: Optional[float] = spec(None, doc="Unix time it was queued.")
    started: Optional[float] = spec(None, doc="Unix time a worker took it; absent while queued.")
    finished: Optional[float] = spec(None, doc="Unix time it ended.")


@dataclass
class JobList:
    """Answer of GET /v1/jobs: the most recent jobs, newest first."""

    jobs: List[JobStatus] = spec(default_factory=list, doc="Jobs, newest first.")


@dataclass
class ProgressEvent:
    """One denoising step done (Server-Sent Event 'progress')."""

    id: str = spec(doc="Job id.")
    step: int = spec(minimum=0, doc="Steps done.")
    total: int = spec(minimum=0, doc="Steps in all.")
    preview_png: Optional[str] = spec(None, doc="Small base64 PNG preview of the blend or foreground, if cheap.")
    phase: Phase = spec(Phase.denoise, doc="prior (the restart prior pass) or denoise; once step = total the "
                                          "server is decoding the images.")


@dataclass
class FastPreset:
    """What speed 'fast' runs on this server."""

    family: str = spec(doc="The distillation: 'lightning', 'hyper', 'dmd2', 'lcm' or 'turbo'.")
    source: str = spec(doc="The distilled LoRA's name, or 'model' when the served checkpoint is distilled.")
    sampler: Sampler = spec(doc="The scheduler it was distilled for.")
    guidance: float = spec(doc="The guidance it runs at; <= 1: only the conditional rows run.")
    min_steps: int = spec(minimum=1, doc="Fewest steps a fast job may ask for.")
    max_steps: int = spec(minimum=1, doc="Most steps a fast job may ask for.")
    default_steps: int = spec(minimum=1, doc="The steps it was distilled for.")


@dataclass
class Health:
    """Answer of GET /v1/health."""

    state: ServerState = spec(doc="loading, ready or error.")
    version: str = spec(doc="Backend version.")
    protocol: str = spec(PROTOCOL_VERSION, doc="Protocol version.")
    device: str = spec("", doc="Where the model runs, e.g. 'cuda:0 (float16)' or 'cpu (float32)'.")
    model: str = spec("", doc="The model preset or path being served.")
    queue_length: int = spec(0, minimum=0, doc="Jobs queued or running.")
    error: Optional[str] = spec(None, doc="Why the model could not load; only in state 'error'.")
    auth: bool = spec(False, doc="Whether requests need a bearer token.")
    fast: Optional[FastPreset] = spec(None, doc="The preset speed 'fast' runs; absent when none is configured.")
    workers: int = spec(1, minimum=0, doc="Workers that run jobs (one per GPU on a cluster); those loaded so far.")


@dataclass
class ModelInfo:
    """One model the server can serve."""

    name: str = spec(doc="Preset name or path.")
    kind: str = spec(doc="'preset', 'diffusers', 'single_file' or 'hub'.")
    available: bool = spec(doc="Whether its files are present locally.")
    loaded: bool = spec(False, doc="Whether it is the model being served.")
    description: str = spec("", doc="What it is.")


@dataclass
class LoraInfo:
    """One LoRA file in the server's LoRA folders."""

    name: str = spec(doc="What a job's 'loras[].name' gives: the path under its LoRA folder.")
    base: str = spec(doc="The model family it was trained for: 'sdxl', 'sd1', 'sd2', 'tiny' or 'unknown'.")
    format: str = spec(doc="'kohya', 'lycoris' (LoCon), 'diffusers' or 'peft'; 'unsupported' when unusable.")
    size: int = spec(0, minimum=0, doc="File size in bytes.")
    usable: bool = spec(False, doc="Whether the model being served takes it.")
    reason: str = spec("", doc="Why it is not usable; empty when it is.")


@dataclass
class ModelList:
    """Answer of GET /v1/models."""

    models: List[ModelInfo] = spec(default_factory=list, doc="Known models.")
    loaded: str = spec("", doc="The model being served.")
    loras: List[LoraInfo] = spec(default_factory=list, doc="LoRA files found, usable ones first.")


# SSE event names on GET /v1/jobs/{id}/events: 'status' carries a JobStatus (first on connect and on
# every state change; the stream ends after a status whose state is final), 'progress' a ProgressEvent.
EVENT_STATUS = "status"
EVENT_PROGRESS = "progress"


def job_path(job_id: str) -> str:
    return "%s/jobs/%s" % (API_PREFIX, job_id)


def cancel_path(job_id: str) -> str:
    """POST here stops a job and keeps its record; DELETE on ``job_path`` removes the job."""
    return job_path(job_id) + "/cancel"


def image_path(job_id: str, name: str) -> str:
    return "%s/jobs/%s/images/%s.png" % (API_PREFIX, job_id, name)
