"""A collapsible section for the narrow docker: an arrow button that shows or hides its content.

A checkable QGroupBox only disables its content, which still takes the dock's height; this hides it,
so settings an artist rarely touches cost one line until opened.
"""
from typing import Any, Optional

from .qt import QSizePolicy, Qt, QToolButton, QVBoxLayout, QWidget, pyqtSignal


class Collapsible(QWidget):
    """``toggle`` (the header) and ``content`` (a QWidget whose ``body`` layout holds the section)."""

    expanded_changed = pyqtSignal(bool)

    def __init__(self, title: str, parent: Optional[QWidget] = None, tooltip: str = "") -> None:
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setToolTip(tooltip or "Show or hide: %s" % title)
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.content = QWidget()
        self.body = QVBoxLayout(self.content)
        self.body.setContentsMargins(8, 0, 0, 4)  # indented under the arrow: it reads as belonging
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        outer.addWidget(self.toggle)
        outer.addWidget(self.content)
        self.toggle.toggled.connect(self.set_expanded)
        self.set_expanded(False)

    def add(self, widget: Any) -> Any:
        self.body.addWidget(widget)
        return widget

    def is_expanded(self) -> bool:
        return self.toggle.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        changed = self.content.isVisibleTo(self) != expanded
        self.toggle.blockSignals(True)
        self.toggle.setChecked(expanded)
        self.toggle.blockSignals(False)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.content.setVisible(expanded)
        if changed:
            self.expanded_changed.emit(expanded)
