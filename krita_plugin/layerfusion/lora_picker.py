"""The LoRA picker of the docker: rows of (name, strength, remove) plus "Add LoRA" and "Refresh".

``LoraPicker`` is a plain QWidget, no Krita and no network: the controller hands it the server's LoRA
list and reads the rows back as ``protocol.LoraChoice``. ``LoraCatalog`` fetches that list through
the client's asynchronous ``Api`` (client.py is at its size limit, hence here). Enums are spelled
scoped (``Qt.ItemDataRole.ToolTipRole``), which PyQt5 and PyQt6 both accept.
"""
from typing import Any, List, Optional, Sequence

from .client import Api, HttpResult
from .qt import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QObject,
    QPushButton,
    Qt,
    QToolButton,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from .wire import ProtocolError, parse_response, protocol

DEFAULT_STRENGTH = 1.0
STRENGTH_STEP = 0.05
TOOLTIP_ROLE = Qt.ItemDataRole.ToolTipRole


class LoraRow(QWidget):
    """One LoRA: an editable name (typed names are allowed: the server has the last word), a strength."""

    changed = pyqtSignal()
    remove_clicked = pyqtSignal(object)  # this row

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        line = QHBoxLayout(self)
        line.setContentsMargins(0, 0, 0, 0)
        self.name = QComboBox()
        self.name.setEditable(True)
        self.name.setToolTip("LoRA file, as the server lists it (its path under a LoRA folder)")
        line_edit = self.name.lineEdit()
        if line_edit is not None:
            line_edit.setPlaceholderText("LoRA name")
        self.strength = QDoubleSpinBox()
        self.strength.setDecimals(2)
        self.strength.setRange(-protocol.MAX_LORA_STRENGTH, protocol.MAX_LORA_STRENGTH)
        self.strength.setSingleStep(STRENGTH_STEP)
        self.strength.setValue(DEFAULT_STRENGTH)
        self.strength.setToolTip("1 = as trained, 0 = off, negative pushes away from it")
        self.remove = QToolButton()
        self.remove.setText("✕")
        self.remove.setToolTip("Remove this LoRA")
        line.addWidget(self.name, 1)
        line.addWidget(self.strength)
        line.addWidget(self.remove)
        self.name.currentTextChanged.connect(lambda _text: self.changed.emit())
        self.strength.valueChanged.connect(lambda _value: self.changed.emit())
        self.remove.clicked.connect(lambda: self.remove_clicked.emit(self))

    def fill(self, available: Sequence[Any]) -> None:
        """List the server's LoRAs; unusable ones stay visible but disabled, their reason as tooltip."""
        text = self.name.currentText()
        self.name.blockSignals(True)
        try:
            self.name.clear()
            for info in available:
                self.name.addItem(info.name, info.name)
                index = self.name.count() - 1
                if not info.usable:
                    self.name.setItemData(index, info.reason or "not usable with this model", TOOLTIP_ROLE)
                    item = getattr(self.name.model(), "item", lambda _i: None)(index)
                    if item is not None:  # the default model is a QStandardItemModel
                        item.setEnabled(False)
                else:
                    self.name.setItemData(index, "%s, %s" % (info.base, info.format), TOOLTIP_ROLE)
            self.name.setEditText(text)  # the row keeps what it held, listed or not
        finally:
            self.name.blockSignals(False)

    def choice(self) -> Optional[Any]:
        name = self.name.currentText().strip()
        if not name:
            return None
        return protocol.LoraChoice(name=name, strength=round(float(self.strength.value()), 4))

    def set_choice(self, name: str, strength: float) -> None:
        self.name.setEditText(name)
        self.strength.setValue(strength)


class LoraPicker(QWidget):
    """Up to MAX_LORAS rows; ``changed`` on any edit, ``refresh_requested`` for the Refresh button."""

    changed = pyqtSignal()
    refresh_requested = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("LayerFusionLoraPicker")
        self.available: List[Any] = []  # protocol.LoraInfo from the server, usable first
        self.rows: List[LoraRow] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self._rows_box = QVBoxLayout()
        outer.addLayout(self._rows_box)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add LoRA")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Ask the server for its LoRA list again")
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        outer.addLayout(buttons)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)
        self.add_button.clicked.connect(self._add_clicked)
        self.refresh_button.clicked.connect(self.refresh_requested)

    # ---- rows ------------------------------------------------------------------------------------
    def _add_clicked(self) -> None:
        self.add_row()

    def add_row(self, name: str = "", strength: float = DEFAULT_STRENGTH) -> Optional[LoraRow]:
        if len(self.rows) >= protocol.MAX_LORAS:
            return None
        row = LoraRow(self)
        row.fill(self.available)
        row.set_choice(name, strength)
        row.changed.connect(self.changed)
        row.remove_clicked.connect(self.remove_row)
        self.rows.append(row)
        self._rows_box.addWidget(row)
        self._update_buttons()
        self.changed.emit()
        return row

    def remove_row(self, row: LoraRow) -> None:
        if row not in self.rows:
            return
        self.rows.remove(row)
        self._rows_box.removeWidget(row)
        row.hide()
        row.deleteLater()
        self._update_buttons()
        self.changed.emit()

    def _update_buttons(self) -> None:
        full = len(self.rows) >= protocol.MAX_LORAS
        self.add_button.setEnabled(not full)
        self.add_button.setToolTip("At most %d LoRAs per job" % protocol.MAX_LORAS if full else "Add a LoRA row")

    # ---- values ----------------------------------------------------------------------------------
    def choices(self) -> List[Any]:
        """The rows as protocol.LoraChoice, in order; rows without a name are left out."""
        return [c for c in (row.choice() for row in self.rows) if c is not None]

    def set_choices(self, choices: Sequence[Any]) -> None:
        """Replace every row; one ``changed`` at the end, not one per row."""
        self.blockSignals(True)
        try:
            for row in list(self.rows):
                self.remove_row(row)
            for choice in list(choices)[: protocol.MAX_LORAS]:
                self.add_row(choice.name, choice.strength)
        finally:
            self.blockSignals(False)
        self.changed.emit()

    def set_available(self, loras: Sequence[Any]) -> None:
        """Take the server's LoRA list (protocol.LoraInfo); every row's name list follows it."""
        self.available = sorted(loras, key=lambda info: not info.usable)  # usable first, stable otherwise
        for row in self.rows:
            row.fill(self.available)
        usable = sum(1 for info in self.available if info.usable)
        if not self.available:
            self.show_status("The server lists no LoRAs.")
        elif usable == len(self.available):
            self.show_status("%d LoRA(s) available." % usable)
        else:
            self.show_status("%d LoRA(s) available, %d not usable with this model."
                             % (usable, len(self.available) - usable))

    def usable_names(self) -> List[str]:
        return [info.name for info in self.available if info.usable]

    def show_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setProperty("error", error)
        self.status.setStyleSheet("color: #c62828" if error else "")


# ---- the server's list ---------------------------------------------------------------------------
def lora_infos(data: Any) -> List[Any]:
    """The ``loras`` of a GET /v1/models answer as protocol.LoraInfo.

    A server without LoRA support omits the key (none); an entry this plugin cannot read is skipped
    so one odd file does not hide the others.
    """
    items = data.get("loras") if isinstance(data, dict) else None
    out = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(parse_response(protocol.LoraInfo, item))
        except ProtocolError:
            continue
    return out


class LoraCatalog(QObject):
    """Fetches the server's LoRA list from GET /v1/models: one request at a time, never blocking."""

    loaded = pyqtSignal(object)  # List[protocol.LoraInfo]
    failed = pyqtSignal(str)  # plain words

    def __init__(self, api: Api, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.api = api
        self.busy = False

    def fetch(self) -> bool:
        """Ask for the list; False when a request is already out (its answer will serve)."""
        if self.busy:
            return False
        self.busy = True
        self.api.get(protocol.API_PREFIX + "/models", self._answer)
        return True

    def _answer(self, result: HttpResult) -> None:
        self.busy = False
        if not result.ok:
            self.failed.emit(result.error)
            return
        try:
            data = result.json()
        except ValueError:
            self.failed.emit("the model list is not JSON")
            return
        self.loaded.emit(lora_infos(data))
