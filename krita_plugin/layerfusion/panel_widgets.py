"""Small factories for the docker panel's controls, each set up for a narrow dock."""
from typing import Any

from .qt import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QPlainTextEdit, QPushButton, QSizePolicy

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
