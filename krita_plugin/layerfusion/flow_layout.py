"""A layout that places its items left to right and wraps to a new row when the width runs out.

Krita's docks are narrow and the artist resizes them: a QHBoxLayout of buttons would force the dock
wider (or get cut), while this layout trades width for rows. It reports ``heightForWidth`` so the
enclosing box layout gives it the rows it needs. After Qt's own "Flow Layout" example.

``FittingVBox`` is the panel's outer layout: Qt sizes a window by its layout's minimumSize, which
leaves out height-for-width (wrapped rows, word-wrapped labels), so those would be squeezed.
"""
from typing import Any, List, Optional

from .qt import QLayout, QPoint, QRect, QSize, Qt, QVBoxLayout, QWidget


class FlowLayout(QLayout):
    def __init__(self, parent: Optional[QWidget] = None, spacing: int = 4) -> None:
        super().__init__(parent)
        self._items: List[Any] = []
        self._gap = spacing
        self.setContentsMargins(0, 0, 0, 0)

    # ---- the QLayout protocol --------------------------------------------------------------------
    def addItem(self, item: Any) -> None:  # Qt's name; addWidget comes through here
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> Any:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> Any:
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Any:
        return Qt.Orientation(0)  # neither: rows grow by wrapping, not by stretching

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: Any) -> None:
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> Any:
        return self.minimumSize()

    def minimumSize(self) -> Any:
        """The widest single item: anything wider than that can wrap."""
        size = QSize(0, 0)
        for item in self._visible():
            size = size.expandedTo(item.minimumSize())
        margins = self.contentsMargins()
        return size + QSize(margins.left() + margins.right(), margins.top() + margins.bottom())

    # ---- placing ---------------------------------------------------------------------------------
    def _visible(self) -> List[Any]:
        return [item for item in self._items if not item.isEmpty()]  # hidden widgets take no room

    def _place(self, rect: Any, move: bool) -> int:
        """Lay the items out in rows inside ``rect`` (only measure unless ``move``); the height used."""
        margins = self.contentsMargins()
        left, top = rect.x() + margins.left(), rect.y() + margins.top()
        right = rect.right() - margins.right()
        x, y, row_height = left, top, 0
        for item in self._visible():
            hint = item.sizeHint()
            if x > left and x + hint.width() - 1 > right:  # does not fit: start a new row
                x, y, row_height = left, y + row_height + self._gap, 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), QSize(min(hint.width(), right - x + 1), hint.height())))
            x += hint.width() + self._gap
            row_height = max(row_height, hint.height())
        return y + row_height - rect.y() + margins.bottom()


class FittingVBox(QVBoxLayout):
    """A QVBoxLayout whose minimum height is its height for the width it was last laid out at."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._width = -1

    def minimumSize(self) -> Any:
        size = super().minimumSize()
        if self._width > 0 and self.hasHeightForWidth():
            size.setHeight(max(size.height(), self.heightForWidth(max(self._width, size.width()))))
        return size

    def setGeometry(self, rect: Any) -> None:
        before = self.minimumSize().height()
        self._width = rect.width()
        super().setGeometry(rect)
        if self.minimumSize().height() != before:
            self.invalidate()  # the widget asks again for the height this width needs
