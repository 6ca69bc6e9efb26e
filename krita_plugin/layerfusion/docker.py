"""The LayerFusion panel: every control of the docker, as a plain QWidget (no Krita import).

The Krita DockWidget only wraps this panel, so its behaviour is testable offscreen. The panel holds
no logic beyond presenting state; the controller reacts to its signals.
"""
import math
import random
from typing import Any, Optional

from .lora_picker import LoraPicker
from .qt import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QIcon,
    QImage,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPixmap,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSize,
    Qt,
    QToolButton,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from .settings import Settings, dump_loras
from .wire import protocol

RESOLUTIONS = [("SDXL, 1 megapixel", 1024 * 1024), ("Draft, 0.25 MP", 512 * 512), ("Tiny test, 128²", 128 * 128)]
_STATE_COLOURS = {"connected": "#2e7d32", "loading": "#b26a00", "offline": "#c62828", "error": "#c62828"}


def _prompt_box(placeholder: str) -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setPlaceholderText(placeholder)
    box.setTabChangesFocus(True)
    box.setMaximumHeight(56)
    return box


class Panel(QWidget):
    generate_clicked = pyqtSignal()
    reblend_clicked = pyqtSignal()
    cancel_clicked = pyqtSignal()
    select_foreground_clicked = pyqtSignal()
    canvas_job_clicked = pyqtSignal(str)  # add_foreground, add_background or harmonize
    start_server_clicked = pyqtSignal()
    reinsert_requested = pyqtSignal(str)  # job id
    settings_changed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("LayerFusionPanel")
        outer = QVBoxLayout(self)

        server_row = QHBoxLayout()
        self.server_url = QLineEdit()
        self.server_url.setToolTip("Address of the LayerFusion server")
        self.start_server = QPushButton("Start local server")
        server_row.addWidget(self.server_url, 1)
        server_row.addWidget(self.start_server)
        outer.addLayout(server_row)
        self.connection = QLabel("Offline: not checked yet")
        self.connection.setWordWrap(True)
        outer.addWidget(self.connection)

        form = QFormLayout()
        self.foreground = _prompt_box("Foreground, e.g. a wine glass")
        self.background = _prompt_box("Background, e.g. a wooden table at dusk")
        self.negative = QLineEdit()
        self.negative.setPlaceholderText("What none of the images should show")
        self.blend = QComboBox()
        for mode in protocol.BlendMode:
            self.blend.addItem(mode.value, mode.value)
        seed_row = QHBoxLayout()
        self.seed = QDoubleSpinBox()  # a QSpinBox stops at 2**31 - 1; seeds go to 2**32 - 1
        self.seed.setDecimals(0)
        self.seed.setRange(0, protocol.MAX_SEED)
        self.random_seed = QCheckBox("random")
        self.dice = QToolButton()
        self.dice.setText("Roll")
        self.dice.setToolTip("Pick a new random seed")
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        seed_row.addWidget(self.dice)
        self.steps = QDoubleSpinBox()
        self.steps.setDecimals(0)
        self.steps.setRange(1, protocol.MAX_STEPS)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.05, 1.0)
        self.strength.setSingleStep(0.05)
        form.addRow("Foreground", self.foreground)
        form.addRow("Background", self.background)
        form.addRow("Negative", self.negative)
        form.addRow("Blend", self.blend)
        form.addRow("Seed", seed_row)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        form.addRow("Re-blend strength", self.strength)
        outer.addLayout(form)

        self.lora_box = QGroupBox("LoRAs")
        lora_layout = QVBoxLayout(self.lora_box)
        self.loras = LoraPicker()
        lora_layout.addWidget(self.loras)
        outer.addWidget(self.lora_box)

        self.advanced = QGroupBox("Advanced")
        self.advanced.setCheckable(True)
        adv = QFormLayout(self.advanced)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setToolTip("Mask threshold τ: how sure the priors must be that a pixel is the object")
        self.coefficient = QDoubleSpinBox()
        self.coefficient.setRange(0.0, 200.0)
        self.coefficient.setSingleStep(1.0)
        # The lowest value stands for a hard step (k = ∞): a spin box has no infinity.
        self.coefficient.setSpecialValueText("step (∞)")
        self.coefficient.setToolTip("Soft decision boundary k: higher = sharper object edge; low values leak")
        self.mask_source = QComboBox()
        for source in protocol.MaskSource:
            self.mask_source.addItem(source.value, source.value)
        self.content_prior = QComboBox()
        for reading in protocol.ContentPrior:
            self.content_prior.addItem(reading.value, reading.value)
        self.resolution = QComboBox()
        for label, pixels in RESOLUTIONS:
            self.resolution.addItem(label, pixels)
        adv.addRow("Threshold τ", self.threshold)
        adv.addRow("Boundary k", self.coefficient)
        adv.addRow("Mask source", self.mask_source)
        adv.addRow("Content prior", self.content_prior)
        adv.addRow("Resolution", self.resolution)
        outer.addWidget(self.advanced)

        buttons = QHBoxLayout()
        self.generate = QPushButton("Generate into layers")
        self.reblend = QPushButton("Regenerate blend")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        buttons.addWidget(self.generate)
        buttons.addWidget(self.reblend)
        buttons.addWidget(self.cancel)
        outer.addLayout(buttons)
        canvas_row = QHBoxLayout()  # jobs on the artist's own layers (also in Tools > Scripts)
        self.canvas_buttons = {}
        for kind, label, tip in (
                ("add_foreground", "Add object", "Add object as layer: generate the foreground prompt into the "
                 "selection (or anywhere) of the visible canvas"),
                ("add_background", "Add background", "Generate background for layer: a background prompt's "
                 "scene beneath the active layer, and their blend"),
                ("harmonize", "Harmonize", "Harmonize selected layers: blend the selected transparent layers "
                 "into what lies beneath them")):
            button = QPushButton(label)
            button.setToolTip(tip)
            button.clicked.connect(lambda _checked=False, k=kind: self.canvas_job_clicked.emit(k))
            canvas_row.addWidget(button)
            self.canvas_buttons[kind] = button
        outer.addLayout(canvas_row)
        self.auto_reblend = QCheckBox("Auto re-blend when the foreground stops moving")
        outer.addWidget(self.auto_reblend)
        mask_row = QHBoxLayout()
        self.insert_mask = QCheckBox("Also insert the mask")
        self.insert_mask.setToolTip("Add the method's hard mask as a hidden layer “Mask” below the Foreground")
        self.select_foreground = QPushButton("Select foreground")
        self.select_foreground.setToolTip("Select the active LayerFusion Foreground's (or paint layer's) alpha")
        self.blend_layers = QCheckBox("Blend as layers")
        self.blend_layers.setToolTip("Also add the blend as Shadows (multiply) and Light (screen) layers, "
                                     "the Blend going in hidden (Generate with the generative blend, "
                                     "Add object, Add background, Harmonize)")
        mask_row.addWidget(self.insert_mask, 1)
        mask_row.addWidget(self.blend_layers)
        mask_row.addWidget(self.select_foreground)
        outer.addLayout(mask_row)
        self.progress = QProgressBar()
        self.progress.setFormat("step %v/%m")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        outer.addWidget(self.progress)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.message)
        outer.addWidget(QLabel("History (double-click to insert again)"))
        self.history = QListWidget()
        self.history.setViewMode(QListWidget.ViewMode.IconMode)
        self.history.setIconSize(QSize(72, 72))
        self.history.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.history.setMaximumHeight(180)
        outer.addWidget(self.history)
        outer.addStretch(1)

        self.apply(Settings())
        self.dice.clicked.connect(self.roll_seed)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.generate.clicked.connect(self.generate_clicked)
        self.reblend.clicked.connect(self.reblend_clicked)
        self.cancel.clicked.connect(self.cancel_clicked)
        self.select_foreground.clicked.connect(self.select_foreground_clicked)
        self.start_server.clicked.connect(self.start_server_clicked)
        self.history.itemDoubleClicked.connect(lambda item: self.reinsert_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        for box in (self.foreground, self.background):
            box.textChanged.connect(self.settings_changed)
        for line in (self.negative, self.server_url):
            line.editingFinished.connect(self.settings_changed)
        for combo in (self.blend, self.mask_source, self.content_prior, self.resolution):
            combo.currentIndexChanged.connect(self.settings_changed)
        for spin in (self.seed, self.steps, self.guidance, self.strength, self.threshold, self.coefficient):
            spin.valueChanged.connect(self.settings_changed)
        for check in (self.random_seed, self.auto_reblend, self.insert_mask, self.blend_layers):
            check.toggled.connect(self.settings_changed)
        self.loras.changed.connect(self.settings_changed)

    # ---- settings ------------------------------------------------------------------------------
    def apply(self, values: Settings) -> None:
        self.blockSignals(True)
        try:
            self.server_url.setText(values.server_url)
            self.foreground.setPlainText(values.foreground_prompt)
            self.background.setPlainText(values.background_prompt)
            self.negative.setText(values.negative_prompt)
            _select(self.blend, values.blend)
            self.seed.setValue(values.seed)
            self.random_seed.setChecked(values.random_seed)
            self.seed.setEnabled(not values.random_seed)
            self.steps.setValue(values.steps)
            self.guidance.setValue(values.guidance)
            self.strength.setValue(values.strength)
            self.threshold.setValue(values.threshold)
            k = values.boundary_coefficient
            self.coefficient.setValue(self.coefficient.minimum() if math.isinf(k) else k)
            _select(self.mask_source, values.mask_source)
            _select(self.content_prior, values.content_prior)
            if not _select(self.resolution, values.target_pixels):
                self.resolution.addItem("%d pixels" % values.target_pixels, values.target_pixels)
                _select(self.resolution, values.target_pixels)
            self.auto_reblend.setChecked(values.auto_reblend)
            self.insert_mask.setChecked(values.insert_mask)
            self.blend_layers.setChecked(values.blend_layers)
            self.loras.set_choices(values.lora_choices())
            self.advanced.setChecked(False)
        finally:
            self.blockSignals(False)
        self._token = values.token
        self._history_limit = values.history_limit

    def values(self) -> Settings:
        return Settings(
            server_url=self.server_url.text().strip(),
            token=getattr(self, "_token", ""),
            foreground_prompt=self.foreground.toPlainText().strip(),
            background_prompt=self.background.toPlainText().strip(),
            negative_prompt=self.negative.text().strip(),
            blend=str(self.blend.currentData()),
            seed=int(self.seed.value()),
            random_seed=self.random_seed.isChecked(),
            steps=int(self.steps.value()),
            guidance=float(self.guidance.value()),
            strength=float(self.strength.value()),
            threshold=float(self.threshold.value()),
            boundary_coefficient=_coefficient(self.coefficient),
            mask_source=str(self.mask_source.currentData()),
            content_prior=str(self.content_prior.currentData()),
            auto_reblend=self.auto_reblend.isChecked(),
            insert_mask=self.insert_mask.isChecked(),
            blend_layers=self.blend_layers.isChecked(),
            target_pixels=int(self.resolution.currentData()),
            history_limit=getattr(self, "_history_limit", 12),
            loras=dump_loras(self.loras.choices()),
        )

    def roll_seed(self) -> None:
        self.seed.setValue(random.randint(0, protocol.MAX_SEED))

    # ---- state shown -----------------------------------------------------------------------------
    def set_connection(self, kind: str, text: str) -> None:
        self.connection.setText(text)
        self.connection.setProperty("state", kind)
        self.connection.setStyleSheet("color: %s" % _STATE_COLOURS.get(kind, "palette(text)"))
        self.start_server.setEnabled(kind == "offline")

    def set_running(self, running: bool) -> None:
        self.cancel.setEnabled(running)
        if not running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def set_progress(self, step: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(step, max(1, total)))

    def show_message(self, text: str) -> None:
        self.message.setStyleSheet("")
        self.message.setProperty("error", False)
        self.message.setText(text)

    def show_error(self, text: str) -> None:
        self.message.setStyleSheet("color: #c62828")
        self.message.setProperty("error", True)
        self.message.setText(text)

    def add_history(self, job_id: str, label: str, thumb: Optional[QImage], newest: bool = True) -> None:
        """Session results go on top; older ones listed by the server are appended below."""
        for row in range(self.history.count()):
            if self.history.item(row).data(Qt.ItemDataRole.UserRole) == job_id:
                return
        item = QListWidgetItem(label[:24])
        item.setToolTip(label)
        item.setData(Qt.ItemDataRole.UserRole, job_id)
        if thumb is not None and not thumb.isNull():
            item.setIcon(QIcon(QPixmap.fromImage(thumb)))
        self.history.insertItem(0 if newest else self.history.count(), item)
        while self.history.count() > max(1, getattr(self, "_history_limit", 12)):
            self.history.takeItem(self.history.count() - 1)


def _select(combo: QComboBox, data: Any) -> bool:
    index = combo.findData(data)
    if index >= 0:
        combo.setCurrentIndex(index)
    return index >= 0


def _coefficient(spin: Any) -> float:
    value = float(spin.value())
    return math.inf if value <= spin.minimum() else value
