"""The LayerFusion panel: every control of the docker, as a plain QWidget (no Krita import).

The Krita DockWidget only wraps this panel, so its behaviour is testable offscreen. The panel holds
no logic beyond presenting state; the controller reacts to its signals.

Laid out for a narrow dock (260 px and up): what an artist uses on every image (prompts, Generate,
the canvas jobs) comes first; labels sit above their fields and button rows wrap (FlowLayout), so
nothing needs more width than its widest single control; rarely touched settings sit in collapsed
sections (Collapsible); long explanations are tooltips.
"""
import math
import random
from typing import Any, Optional

from . import docker_options
from . import panel_widgets as pw
from .flow_layout import FittingVBox, FlowLayout
from .preview import PreviewView
from .qt import (
    QFormLayout,
    QHBoxLayout,
    QIcon,
    QImage,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPixmap,
    QProgressBar,
    QSize,
    QSizePolicy,
    Qt,
    QToolButton,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from .settings import Settings, dump_loras
from .wire import protocol

_STATE_COLOURS = {"connected": "#2e7d32", "loading": "#b26a00", "offline": "#c62828", "error": "#c62828"}
HISTORY_HEIGHT = 96  # px: one row of thumbnails, its labels and a horizontal scroll bar
THUMB = 56
CANVAS_JOBS = (
    ("add_foreground", "Add object", "Add object as layer: generate the foreground prompt into the "
     "selection (or anywhere) of the visible canvas"),
    ("add_background", "Add background", "Generate background for layer: a background prompt's "
     "scene beneath the active layer, and their blend"),
    ("harmonize", "Harmonize", "Harmonize selected layers: blend the selected transparent layers "
     "into what lies beneath them"),
)


class Panel(QWidget):
    generate_clicked = pyqtSignal()
    reblend_clicked = pyqtSignal()
    cancel_clicked = pyqtSignal()
    select_foreground_clicked = pyqtSignal()
    canvas_job_clicked = pyqtSignal(str)  # add_foreground, add_background or harmonize
    start_server_clicked = pyqtSignal()
    stop_server_clicked = pyqtSignal()  # only offered for the server this Krita started
    reinsert_requested = pyqtSignal(str)  # job id
    settings_changed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("LayerFusionPanel")
        self._history_limit = Settings.history_limit  # a setting without a widget
        outer = FittingVBox(self)
        outer.setContentsMargins(4, 4, 4, 4)  # a dock has its own frame; every pixel of width counts
        outer.setSpacing(4)
        outer.addLayout(self._build_connection())
        outer.addLayout(self._build_prompts())
        self.generate = pw.button("Generate into layers", "Generate foreground, background and blend "
                                  "as new layers of the active document")
        self.generate.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        outer.addWidget(self.generate)
        outer.addLayout(self._build_actions())
        outer.addLayout(self._build_basics())
        outer.addLayout(docker_options.build_options(self))
        self.progress = QProgressBar()
        self.progress.setFormat(progress_format(0, 0, ""))
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        outer.addWidget(self.progress)
        self.preview = PreviewView()  # hidden until a job sends one
        # A label showing a pixmap asks for the pixmap's width: Ignored lets the dock narrow again.
        self.preview.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        outer.addWidget(self.preview)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.message)
        outer.addWidget(self._build_history())
        for section in docker_options.build_sections(self):
            outer.addWidget(section)
        outer.addStretch(1)

        self.apply(Settings())
        self._connect()

    # ---- building ------------------------------------------------------------------------------
    def _build_connection(self) -> QHBoxLayout:
        """One line: the server's state and a small Start/Stop button; the address is in "Server"."""
        row = QHBoxLayout()
        self.connection = QLabel("Offline: not checked yet")
        self.connection.setWordWrap(True)
        self.server_button = QToolButton()
        self._own_server = False
        self._connection_kind = "offline"
        row.addWidget(self.connection, 1)
        row.addWidget(self.server_button)
        self._show_server_button()
        return row

    def _build_prompts(self) -> QVBoxLayout:
        column = QVBoxLayout()
        column.setSpacing(4)
        self.foreground = pw.prompt_box("Foreground: e.g. a wine glass", "Foreground prompt: the object, "
                                        "generated with real transparency")
        self.background = pw.prompt_box("Background: e.g. a wooden table at dusk", "Background prompt: the "
                                        "scene behind it")
        column.addWidget(self.foreground)
        column.addWidget(self.background)
        return column

    def _build_actions(self) -> FlowLayout:
        """Re-blend, Cancel and the jobs on the artist's own layers (also in Tools > Scripts); wraps."""
        flow = FlowLayout(spacing=4)
        self.reblend = pw.button("Regenerate blend", "Blend the current Foreground and Background again")
        self.cancel = pw.button("Cancel", "Cancel the newest running job")
        self.cancel.setEnabled(False)
        flow.addWidget(self.reblend)
        flow.addWidget(self.cancel)
        self.canvas_buttons = {}
        for kind, label, tip in CANVAS_JOBS:
            button = pw.button(label, tip)
            button.clicked.connect(lambda _checked=False, k=kind: self.canvas_job_clicked.emit(k))
            flow.addWidget(button)
            self.canvas_buttons[kind] = button
        return flow

    def _build_basics(self) -> QFormLayout:
        form = pw.form()
        self.blend = pw.combo([(mode.value, mode.value) for mode in protocol.BlendMode],
                            "How the foreground is blended into the background")
        # "random" sits on the label's line, so the seed's own line needs only the number and Roll.
        self.random_seed = pw.check("random", "A new random seed for every job")
        seed_row = QHBoxLayout()
        # A QSpinBox stops at 2**31 - 1; seeds go to 2**32 - 1.
        self.seed = pw.spin(0, protocol.MAX_SEED, decimals=0)
        self.seed.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.dice = QToolButton()
        self.dice.setText("Roll")
        self.dice.setToolTip("Pick a new random seed")
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice)
        self.steps = pw.spin(1, protocol.MAX_STEPS, decimals=0, tip="Denoising steps")
        # "Fast" sits on the Steps label's line, as "random" on the Seed's: it decides what Steps holds.
        self.fast = pw.check("Fast", "")
        self.speed = pw.FastSteps(self.fast, self.steps)  # before settings_changed: values() sees its steps
        form.addRow("Blend", self.blend)
        form.addRow(pw.label_row("Seed", self.random_seed), seed_row)
        form.addRow(pw.label_row("Steps", self.fast), self.steps)
        return form

    def _build_history(self) -> QWidget:
        """A strip of thumbnails, newest left; it scrolls sideways instead of taking the dock's height."""
        self.history = QListWidget()
        self.history.setToolTip("Results of this session and the server's; double-click one to insert it again")
        self.history.setViewMode(QListWidget.ViewMode.IconMode)
        self.history.setFlow(QListWidget.Flow.LeftToRight)
        self.history.setWrapping(False)
        self.history.setMovement(QListWidget.Movement.Static)
        self.history.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.history.setIconSize(QSize(THUMB, THUMB))
        self.history.setGridSize(QSize(THUMB + 16, THUMB + 18))
        self.history.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.history.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.history.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.history.setFixedHeight(HISTORY_HEIGHT)
        self.history.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        return self.history

    def _connect(self) -> None:
        self.dice.clicked.connect(self.roll_seed)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.generate.clicked.connect(self.generate_clicked)
        self.reblend.clicked.connect(self.reblend_clicked)
        self.cancel.clicked.connect(self.cancel_clicked)
        self.select_foreground.clicked.connect(self.select_foreground_clicked)
        self.server_button.clicked.connect(
            lambda: (self.stop_server_clicked if self._own_server else self.start_server_clicked).emit())
        self.history.itemDoubleClicked.connect(lambda item: self.reinsert_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        for box in (self.foreground, self.background):
            box.textChanged.connect(self.settings_changed)
        for line in (self.negative, self.server_url, self.token):
            line.editingFinished.connect(self.settings_changed)
        for combo in (self.blend, self.mask_source, self.content_prior, self.resolution):
            combo.currentIndexChanged.connect(self.settings_changed)
        for spin in (self.seed, self.steps, self.guidance, self.strength, self.threshold, self.coefficient,
                     self.live_interval):
            spin.valueChanged.connect(self.settings_changed)
        for check in (self.auto_reblend, self.fast):
            check.toggled.connect(self._show_live)
        for check in (self.random_seed, self.fast, self.auto_reblend, self.insert_mask, self.blend_layers,
                      self.local_reblend):
            check.toggled.connect(self.settings_changed)
        self.loras.changed.connect(self.settings_changed)

    # ---- settings ------------------------------------------------------------------------------
    def apply(self, values: Settings) -> None:
        self.blockSignals(True)
        try:
            self.server_url.setText(values.server_url)
            self.token.setText(values.token)
            self.foreground.setPlainText(values.foreground_prompt)
            self.background.setPlainText(values.background_prompt)
            self.negative.setText(values.negative_prompt)
            pw.select(self.blend, values.blend)
            self.seed.setValue(values.seed)
            self.random_seed.setChecked(values.random_seed)
            self.seed.setEnabled(not values.random_seed)
            self.speed.set_values(values.fast, values.steps, values.fast_steps)
            self.guidance.setValue(values.guidance)
            self.strength.setValue(values.strength)
            self.local_reblend.setChecked(values.local_reblend)
            self.threshold.setValue(values.threshold)
            k = values.boundary_coefficient
            self.coefficient.setValue(self.coefficient.minimum() if math.isinf(k) else k)
            pw.select(self.mask_source, values.mask_source)
            pw.select(self.content_prior, values.content_prior)
            if not pw.select(self.resolution, values.target_pixels):
                self.resolution.addItem("%d pixels" % values.target_pixels, values.target_pixels)
                pw.select(self.resolution, values.target_pixels)
            self.auto_reblend.setChecked(values.auto_reblend)
            self.live_interval.setValue(values.live_interval_ms)
            self.insert_mask.setChecked(values.insert_mask)
            self.blend_layers.setChecked(values.blend_layers)
            self.loras.set_choices(values.lora_choices())
            self.advanced.set_expanded(False)  # method options start folded away
        finally:
            self.blockSignals(False)
        self._show_live()  # Fast is set with its signals blocked
        self._history_limit = values.history_limit

    def values(self) -> Settings:
        return Settings(
            server_url=self.server_url.text().strip(),
            token=self.token.text().strip(),
            foreground_prompt=self.foreground.toPlainText().strip(),
            background_prompt=self.background.toPlainText().strip(),
            negative_prompt=self.negative.text().strip(),
            blend=str(self.blend.currentData()),
            seed=int(self.seed.value()),
            random_seed=self.random_seed.isChecked(),
            **self.speed.values(),
            guidance=float(self.guidance.value()),
            strength=float(self.strength.value()),
            local_reblend=self.local_reblend.isChecked(),
            threshold=float(self.threshold.value()),
            boundary_coefficient=pw.coefficient_value(self.coefficient),
            mask_source=str(self.mask_source.currentData()),
            content_prior=str(self.content_prior.currentData()),
            auto_reblend=self.auto_reblend.isChecked(),
            live_interval_ms=int(self.live_interval.value()),
            insert_mask=self.insert_mask.isChecked(),
            blend_layers=self.blend_layers.isChecked(),
            target_pixels=int(self.resolution.currentData()),
            history_limit=self._history_limit,
            loras=dump_loras(self.loras.choices()),
        )

    def roll_seed(self) -> None:
        self.seed.setValue(random.randint(0, protocol.MAX_SEED))

    def show_health(self, health: Optional[Any]) -> None:
        """The server's protocol.Health (None: none answered): Fast is offered with a fast preset."""
        self.speed.show_health(health)
        self._show_live()  # a server without a preset may have turned Fast off

    def _show_live(self) -> None:
        self.live_interval.setEnabled(docker_options.live_enabled(self.auto_reblend.isChecked(),
                                                                  self.fast.isChecked()))

    def show_latency(self, seconds: float) -> None:
        """The last re-blend's latency, kept while other messages come and go."""
        self.latency.setText(docker_options.latency_text(seconds))

    # ---- state shown -----------------------------------------------------------------------------
    def set_connection(self, kind: str, text: str) -> None:
        self.connection.setText(text)
        self.connection.setProperty("state", kind)
        self.connection.setStyleSheet("color: %s" % _STATE_COLOURS.get(kind, "palette(text)"))
        self._connection_kind = kind
        self._show_server_button()

    def set_own_server(self, running: bool) -> None:
        """Whether the server this Krita started is running: the button then offers to stop it."""
        self._own_server = running
        self._show_server_button()

    def _show_server_button(self) -> None:
        if self._own_server:
            self.server_button.setText("Stop")
            self.server_button.setToolTip("Stop the local server this Krita started")
            self.server_button.setEnabled(True)
        else:
            self.server_button.setText("Start")
            self.server_button.setToolTip("Start the local LayerFusion server (the address is under Server)")
            self.server_button.setEnabled(self._connection_kind == "offline")

    def set_running(self, running: bool) -> None:
        self.cancel.setEnabled(running)
        if not running:
            self.progress.setFormat(progress_format(0, 0, ""))
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.preview.clear_preview()

    def set_progress(self, step: int, total: int, phase: str = "") -> None:
        """The bar names the stage: the prior pass, denoising, and decoding once every step is done."""
        self.progress.setFormat(progress_format(step, total, phase))
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
        while self.history.count() > max(1, self._history_limit):
            self.history.takeItem(self.history.count() - 1)


def progress_format(step: int, total: int, phase: str) -> str:
    """QProgressBar text (%v: value, %m: maximum) for a server phase ("prior", "denoise" or unknown)."""
    if phase == "prior":
        return "Prior pass %v/%m"
    if total and step >= total:
        return "Decoding…"
    return "Denoising %v/%m" if phase == "denoise" else "Step %v/%m"
