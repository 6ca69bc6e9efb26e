"""Small factories for the docker panel's controls, each set up for a narrow dock, and the Fast toggle."""
import math
from typing import Any, Dict, Optional

from .qt import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QWidget,
)
from .wire import protocol

PROMPT_LINES = 2  # Krita's default workspace gives a new docker ~170 px: prompts and Generate must fit


def prompt_box(placeholder: str, tip: str) -> QPlainTextEdit:
    """A prompt field PROMPT_LINES tall (it scrolls beyond), its name in the placeholder: a label above
    each would push Generate out of a docker's first view."""
    box = QPlainTextEdit()
    box.setPlaceholderText(placeholder)
    box.setToolTip(tip)
    box.setTabChangesFocus(True)
    margins = 2 * (box.frameWidth() + int(box.document().documentMargin()))
    box.setFixedHeight(PROMPT_LINES * box.fontMetrics().lineSpacing() + margins)
    return box


def form() -> QFormLayout:
    """Labels above their fields: beside them, the label column alone eats a third of a narrow dock."""
    form = QFormLayout()
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setContentsMargins(0, 0, 0, 0)
    return form


def combo(items: Any, tip: str = "") -> QComboBox:
    """A combo box whose minimum width does not follow its longest item (it elides instead)."""
    combo = QComboBox()
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(8)
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    for label, data in items:
        combo.addItem(label, data)
    combo.setToolTip(tip)
    return combo


def spin(low: float, high: float, step: float = 1.0, decimals: int = 2, tip: str = "") -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setDecimals(decimals)
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setToolTip(tip)
    return spin


def check(text: str, tip: str) -> QCheckBox:
    box = QCheckBox(text)
    box.setToolTip(tip)
    return box


def button(text: str, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    return button


def label_row(text: str, check: QCheckBox) -> QWidget:
    """A form row's label with a short checkbox at its right end ("Seed ... random")."""
    label = QWidget()
    row = QHBoxLayout(label)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(QLabel(text))
    row.addStretch(1)
    row.addWidget(check)
    return label


def select(combo: QComboBox, data: Any) -> bool:
    index = combo.findData(data)
    if index >= 0:
        combo.setCurrentIndex(index)
    return index >= 0


def coefficient_value(spin: Any) -> float:
    """The boundary coefficient a spin box shows: its lowest value stands for a hard step (inf)."""
    value = float(spin.value())
    return math.inf if value <= spin.minimum() else value


class FastSteps:
    """The Fast toggle and the Steps box it drives.

    Fast is offered only when the server has a fast preset (Health.fast). On, Steps holds the fast steps
    within the preset's range (switching on starts at its distilled steps); off, the quality steps in
    the normal range. Each kind of steps is kept while the other is shown. With no server answer
    (offline) whether it has a preset is not known: the toggle is greyed out but keeps the artist's
    choice; a server that answers without one turns it off.
    """

    def __init__(self, check: QCheckBox, steps: QDoubleSpinBox) -> None:
        self.check = check
        self.steps = steps
        self.preset: Optional[Any] = None  # protocol.FastPreset
        self.quality_steps = 25
        self.fast_steps = 0  # 0: the preset's default
        check.setEnabled(False)  # until a server says it has a preset
        check.setToolTip(fast_tooltip(None, False))
        check.toggled.connect(self._toggled)
        steps.valueChanged.connect(self._edited)

    def on(self) -> bool:
        """Whether Steps holds the fast steps: Fast on and the server's preset known."""
        return self.preset is not None and self.check.isChecked()

    def show_health(self, health: Optional[Any]) -> None:
        self.preset = getattr(health, "fast", None) if health is not None else None
        self.check.setEnabled(self.preset is not None)
        self.check.setToolTip(fast_tooltip(self.preset, health is not None))
        if health is not None and self.preset is None and self.check.isChecked():
            self._set_checked(False)
        self._show()

    def set_values(self, fast: bool, steps: int, fast_steps: int) -> None:
        self.quality_steps, self.fast_steps = steps, fast_steps
        self._set_checked(fast)  # not as a toggle by hand, which starts at the preset's default steps
        self._show()

    def values(self) -> Dict[str, Any]:
        """Settings' ``fast``, ``steps`` (the quality steps) and ``fast_steps``."""
        shown = int(self.steps.value())
        return dict(fast=self.check.isChecked(), steps=self.quality_steps if self.on() else shown,
                    fast_steps=shown if self.on() else self.fast_steps)

    def _set_checked(self, on: bool) -> None:
        blocked = self.check.blockSignals(True)
        self.check.setChecked(on)
        self.check.blockSignals(blocked)

    def _toggled(self, on: bool) -> None:
        if on and self.preset is not None:
            self.fast_steps = self.preset.default_steps
        self._show()

    def _edited(self, value: float) -> None:
        if self.on():
            self.fast_steps = int(value)
        else:
            self.quality_steps = int(value)

    def _show(self) -> None:
        blocked = self.steps.blockSignals(True)  # a range change clamps the value: not an edit
        try:
            preset = self.preset
            if self.on():
                if not preset.min_steps <= self.fast_steps <= preset.max_steps:
                    self.fast_steps = preset.default_steps
                self.steps.setRange(preset.min_steps, preset.max_steps)
                self.steps.setValue(self.fast_steps)
                self.steps.setToolTip("Denoising steps of the fast preset, %d to %d"
                                      % (preset.min_steps, preset.max_steps))
            else:
                self.steps.setRange(1, protocol.MAX_STEPS)
                self.steps.setValue(self.quality_steps)
                self.steps.setToolTip("Denoising steps")
        finally:
            self.steps.blockSignals(blocked)


def fast_tooltip(preset: Optional[Any], answered: bool) -> str:
    """The Fast toggle's tooltip for a server's FastPreset (None: it has none; ``answered`` False: no
    server answered yet)."""
    what = ("Fast: the server's step-distilled preset runs the job, a few steps and no guidance (it picks "
            "the sampler and guidance), far quicker than the full model")
    how = ("a server offers one when started with serve --fast-lora NAME (a step-distilled LoRA such as "
           "SDXL-Lightning) or --fast-family FAMILY (a distilled checkpoint)")
    if preset is None:
        return "%s. %s: %s." % (what, "This server has no fast preset" if answered else
                                "Not known until a server answers", how)
    guidance = "no guidance" if preset.guidance <= 1 else "guidance %g" % preset.guidance
    sampler = getattr(preset.sampler, "value", preset.sampler)
    source = "the distilled model" if preset.source == "model" else preset.source
    return ("Fast: this server's step-distilled preset runs the job instead of the full model: %s (%s), "
            "%d steps (%d to %d), the %s sampler, %s. Steps then counts its steps; switching Fast off "
            "restores yours." % (preset.family, source, preset.default_steps, preset.min_steps,
                                 preset.max_steps, sampler, guidance))
