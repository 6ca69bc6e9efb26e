"""The docker panel's layout in a narrow Krita dock, offscreen: nothing cut or squeezed, the everyday
controls first, rarely used settings folded away.

The offscreen platform's default font (12 pt) is larger than Krita's, so passing here leaves room.
"""
from __future__ import annotations

from typing import List

import pytest

from layerfusion.docker import Panel
from layerfusion.qt import (
    QComboBox,
    QDoubleSpinBox,
    QImage,
    QListWidget,
    QPoint,
    QRect,
    Qt,
    QToolButton,
    QWidget,
)

NARROW = (260, 420)


def settle(qapp, rounds: int = 6) -> None:
    for _ in range(rounds):  # wrapped rows ask for their height one layout pass later
        qapp.processEvents()


def shown(qapp, width: int, height: int, open_all: bool = False) -> Panel:
    panel = Panel()
    if open_all:  # everything at once: every section open, a LoRA row, a long message, history
        for section in (panel.prompt_box, panel.lora_box, panel.advanced, panel.server_box):
            section.toggle.click()
        panel.loras.add_row("some_folder/a_rather_long_lora_name.safetensors")
        panel.show_error("Generation failed: " + "a long explanation of what went wrong " * 4)
        for n in range(6):
            thumb = QImage(64, 48, QImage.Format.Format_RGB32)
            thumb.fill(0x336699 + n)
            panel.add_history("job-%d" % n, "a wine glass on a wooden table %d" % n, thumb)
    panel.resize(width, height)
    panel.show()
    settle(qapp)
    return panel


def placed_widgets(panel: Panel) -> List[QWidget]:
    """The visible widgets our layouts place; a combo's or spin box's own parts are Qt's business."""
    found = []
    for widget in panel.findChildren(QWidget):
        parent = widget.parentWidget()
        if not widget.isVisible() or widget.objectName().startswith("qt_"):
            continue
        if isinstance(parent, (QComboBox, QDoubleSpinBox)):
            continue
        found.append(widget)
    return found


def describe(widget: QWidget) -> str:
    text = widget.text() if callable(getattr(widget, "text", None)) else ""
    return "%s %r" % (type(widget).__name__, text)


def assert_nothing_cut(panel: Panel, width: int) -> None:
    assert panel.width() == width, "the panel cannot be as narrow as the dock: it is %d wide" % panel.width()
    problems = []
    for widget in placed_widgets(panel):
        right = widget.mapTo(panel, QPoint(widget.width(), 0)).x()
        hint = widget.minimumSizeHint()
        if right > panel.width():
            problems.append("%s reaches x=%d" % (describe(widget), right))
        if widget.width() < hint.width():
            problems.append("%s is %d wide, needs %d" % (describe(widget), widget.width(), hint.width()))
        if widget.height() < min(hint.height(), widget.maximumHeight()):
            problems.append("%s is %d high, needs %d" % (describe(widget), widget.height(), hint.height()))
    assert not problems, problems


def inside(panel: Panel, widget: QWidget, rect) -> bool:
    top_left = widget.mapTo(panel, QPoint(0, 0))
    return rect.contains(QRect(top_left, widget.size()))


@pytest.mark.parametrize("size", [NARROW, (400, 900)], ids=["260x420", "400x900"])
def test_nothing_is_cut_or_squeezed(qapp, size):
    panel = shown(qapp, *size)
    assert_nothing_cut(panel, size[0])
    panel.deleteLater()


@pytest.mark.parametrize("size", [NARROW, (400, 900)], ids=["260x420", "400x900"])
def test_nothing_is_cut_with_every_section_open(qapp, size):
    panel = shown(qapp, *size, open_all=True)
    assert panel.loras.isVisible() and panel.threshold.isVisible() and panel.message.isVisible()
    assert_nothing_cut(panel, size[0])
    panel.deleteLater()


def test_prompts_and_generate_are_visible_without_scrolling(qapp):
    panel = shown(qapp, *NARROW)
    view = QRect(0, 0, *NARROW)
    for widget in (panel.foreground, panel.background, panel.generate, panel.connection, panel.server_button):
        assert inside(panel, widget, view), describe(widget)
    # The everyday order: prompts, Generate, then its companions, then blend, seed and steps.
    y = [w.mapTo(panel, QPoint(0, 0)).y() for w in (panel.foreground, panel.background, panel.generate,
                                                     panel.reblend, panel.blend, panel.seed, panel.steps)]
    assert y == sorted(y)
    assert panel.canvas_buttons["harmonize"].mapTo(panel, QPoint(0, 0)).y() < panel.blend.mapTo(panel, QPoint(0, 0)).y()
    panel.deleteLater()


def test_sections_start_folded_and_open_on_click(qapp):
    panel = shown(qapp, *NARROW)
    sections = {panel.server_box: panel.server_url, panel.advanced: panel.threshold,
                panel.prompt_box: panel.negative, panel.lora_box: panel.loras}
    for section, inner in sections.items():
        assert section.toggle.isVisible() and not inner.isVisible(), section.toggle.text()
        assert section.toggle.arrowType() == Qt.ArrowType.RightArrow
        section.toggle.click()
        settle(qapp)
        assert inner.isVisible() and section.is_expanded()
        section.toggle.click()
        settle(qapp)
        assert not inner.isVisible()
    panel.advanced.toggle.click()
    panel.apply(panel.values())  # loading settings folds the method options again, as before
    assert not panel.advanced.is_expanded() and not panel.threshold.isVisibleTo(panel)
    panel.deleteLater()


def test_button_rows_wrap_instead_of_cutting(qapp):
    buttons = ["reblend", "cancel", "add_foreground", "add_background", "harmonize"]

    def rows(panel: Panel) -> set:
        found = [getattr(panel, name, None) or panel.canvas_buttons[name] for name in buttons]
        return {button.mapTo(panel, QPoint(0, 0)).y() for button in found}

    narrow = shown(qapp, *NARROW)
    for button in list(narrow.canvas_buttons.values()) + [narrow.reblend, narrow.cancel]:
        assert inside(narrow, button, QRect(0, 0, NARROW[0], 10000)), describe(button)
    wide = shown(qapp, 1200, 900)
    assert len(rows(wide)) == 1, "with room to spare the buttons share one row"
    assert len(rows(narrow)) > 1, "at 260 px they wrap onto more rows"
    narrow.deleteLater()
    wide.deleteLater()


def test_connection_line_is_compact_and_texts_are_short(qapp):
    panel = shown(qapp, *NARROW)
    assert isinstance(panel.server_button, QToolButton) and panel.server_button.toolTip()
    assert panel.server_button.width() < NARROW[0] // 3
    for check in (panel.auto_reblend, panel.insert_mask, panel.blend_layers, panel.random_seed):
        assert len(check.text()) <= 16 and check.toolTip(), check.text()
    panel.deleteLater()


def test_history_is_a_strip_of_thumbnails(qapp):
    panel = shown(qapp, *NARROW)
    assert panel.history.viewMode() == QListWidget.ViewMode.IconMode
    assert panel.history.flow() == QListWidget.Flow.LeftToRight and not panel.history.isWrapping()
    assert 80 <= panel.history.height() <= 110
    for n in range(5):
        panel.add_history("job-%d" % n, "result %d" % n, None)
    settle(qapp)
    rects = [panel.history.visualItemRect(panel.history.item(row)) for row in range(panel.history.count())]
    assert len({r.y() for r in rects}) == 1 and [r.x() for r in rects] == sorted(r.x() for r in rects)
    assert panel.history.horizontalScrollBar().maximum() > 0, "more results than room: it scrolls sideways"
    asked: List[str] = []
    panel.reinsert_requested.connect(asked.append)
    panel.history.itemDoubleClicked.emit(panel.history.item(0))
    assert asked == ["job-4"]  # the newest comes first
    panel.deleteLater()
