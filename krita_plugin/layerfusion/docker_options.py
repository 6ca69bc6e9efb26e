"""The docker's option row (auto re-blend and its live interval, mask, blend layers) and its folded-away
settings sections, built onto the Panel: the attributes they set are the Panel's public ones.

Kept apart from docker.py so the panel's file stays small; these builders only create and place
widgets, the Panel connects and reads them.
"""
from typing import Any, List

from . import panel_widgets as pw
from .collapsible import Collapsible
from .flow_layout import FlowLayout
from .lora_picker import LoraPicker
from .qt import QLabel, QLineEdit
from .wire import protocol

RESOLUTIONS = [("SDXL, 1 megapixel", 1024 * 1024), ("Draft, 0.25 MP", 512 * 512), ("Tiny test, 128²", 128 * 128)]
LIVE_RANGE_MS = (100, 5000)  # how often a drag may re-blend: faster floods the server, slower is no longer live
LIVE_TIP = ("While Auto re-blend and Fast are both on, a drag re-blends at most this often, and only once "
            "the re-blend before has landed (the final placement is always re-blended once the foreground "
            "stops)")


def build_options(panel: Any) -> FlowLayout:
    """The everyday toggles under the basics; sets ``auto_reblend``, ``live_interval``, ``latency``,
    ``insert_mask``, ``blend_layers`` and ``select_foreground`` on ``panel``."""
    flow = FlowLayout(spacing=6)
    panel.auto_reblend = pw.check("Auto re-blend", "Re-blend automatically when the foreground stops moving "
                                  "(with Fast, also while it is dragged)")
    # One widget, its words in prefix and suffix: it wraps as a unit in a narrow dock.
    panel.live_interval = pw.spin(*LIVE_RANGE_MS, step=50, decimals=0, tip=LIVE_TIP)
    panel.live_interval.setPrefix("Live every ")
    panel.live_interval.setSuffix(" ms")
    panel.latency = QLabel("")
    panel.latency.setToolTip("How long the last re-blend took, from asking to the new Blend in place")
    panel.insert_mask = pw.check("Insert mask", "Also insert the method's hard mask as a hidden layer "
                                 "“Mask” below the Foreground")
    panel.blend_layers = pw.check("Blend as layers", "Also add the blend as Shadows (multiply) and Light "
                                  "(screen) layers, the Blend going in hidden (Generate with the generative "
                                  "blend, Add object, Add background, Harmonize)")
    panel.select_foreground = pw.button("Select foreground", "Select the active LayerFusion Foreground's "
                                        "(or paint layer's) alpha")
    for widget in (panel.auto_reblend, panel.live_interval, panel.latency, panel.insert_mask,
                   panel.blend_layers, panel.select_foreground):
        flow.addWidget(widget)
    return flow


def live_enabled(auto_reblend: bool, fast: bool) -> bool:
    """The live interval matters only while both are on."""
    return auto_reblend and fast


def latency_text(seconds: float) -> str:
    return "Last re-blend %.1f s" % seconds


def build_sections(panel: Any) -> List[Collapsible]:
    """The folded-away settings: prompt extras, LoRAs, the method (``advanced``), the server."""
    panel.prompt_box = Collapsible("Prompt options", tooltip="Negative prompt, guidance, re-blend strength")
    form = pw.form()
    panel.negative = QLineEdit()
    panel.negative.setPlaceholderText("What none of the images should show")
    panel.guidance = pw.spin(0.0, 30.0, 0.5, tip="Classifier-free guidance: how closely to follow the prompts")
    panel.strength = pw.spin(0.05, 1.0, 0.05, tip="How much a re-blend may change the blend")
    form.addRow("Negative", panel.negative)
    form.addRow("Guidance", panel.guidance)
    form.addRow("Re-blend strength", panel.strength)
    panel.local_reblend = pw.check("Only what moved", "Re-blend around the moved object only; off: the whole group")
    form.addRow("", panel.local_reblend)
    panel.prompt_box.body.addLayout(form)

    panel.lora_box = Collapsible("LoRAs", tooltip="Extra LoRA weights for the model")
    panel.loras = panel.lora_box.add(LoraPicker())

    panel.advanced = Collapsible("Method", tooltip="The method's mask and blend options, and the resolution")
    form = pw.form()
    panel.threshold = pw.spin(0.0, 1.0, 0.05, tip="Mask threshold τ: how sure the priors must be "
                              "that a pixel is the object")
    panel.coefficient = pw.spin(0.0, 200.0, 1.0, tip="Soft decision boundary k: higher = sharper "
                                "object edge; low values leak")
    # The lowest value stands for a hard step (k = ∞): a spin box has no infinity.
    panel.coefficient.setSpecialValueText("step (∞)")
    panel.mask_source = pw.combo([(s.value, s.value) for s in protocol.MaskSource], "Where the mask comes from")
    panel.content_prior = pw.combo([(r.value, r.value) for r in protocol.ContentPrior], "The content prior")
    panel.resolution = pw.combo(RESOLUTIONS, "Generation size; the result is scaled to the canvas")
    form.addRow("Threshold τ", panel.threshold)
    form.addRow("Boundary k", panel.coefficient)
    form.addRow("Mask source", panel.mask_source)
    form.addRow("Content prior", panel.content_prior)
    form.addRow("Resolution", panel.resolution)
    panel.advanced.body.addLayout(form)

    panel.server_box = Collapsible("Server", tooltip="The LayerFusion server's address, and its token when it has one")
    panel.server_url = panel.server_box.add(QLineEdit())
    panel.server_url.setToolTip("Address of the LayerFusion server")
    panel.token = panel.server_box.add(QLineEdit())
    panel.token.setEchoMode(QLineEdit.EchoMode.Password)
    panel.token.setPlaceholderText("Token (a shared server's; none for your own)")
    panel.token.setToolTip("What the server was started with --token; stored with the plugin's settings")
    return [panel.prompt_box, panel.lora_box, panel.advanced, panel.server_box]
