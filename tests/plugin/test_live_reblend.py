"""Re-blend while dragging, offscreen: the throttle's timing policy against hand-computed cases (at most
one per interval, one at a time), and the docker's "Live every … ms" box (enabled with Auto re-blend and
Fast both on, kept in the settings).

The watcher itself (auto_reblend.AutoReblend) needs Krita's layers: tests/krita/test_krita_live.py drives it.
"""
from __future__ import annotations

from layerfusion import settings as store
from layerfusion.docker import Panel
from layerfusion.live_throttle import LiveThrottle
from layerfusion.qt import QSettings
from layerfusion.settings import Settings

from tests.plugin.test_docker_fast import PRESET, health


def test_a_drag_fires_one_interval_in_then_at_most_once_per_interval():
    throttle = LiveThrottle(0.5)
    assert not throttle.dragging
    # (time of the move seen, whether a live re-blend starts): the first move starts the clock.
    for now, fires in ((0.0, False), (0.25, False), (0.5, True), (0.75, False), (0.875, False), (1.0, True),
                       (1.25, False)):
        assert throttle.moved(now) is fires, now
    assert throttle.dragging
    throttle.stopped()  # the foreground settled: the next drag starts anew
    assert not throttle.dragging
    for now, fires in ((2.0, False), (2.25, False), (2.5, True)):
        assert throttle.moved(now) is fires, now
    throttle.interval_s = 1.0  # the docker's interval changed mid-drag: counted from the last start
    for now, fires in ((3.0, False), (3.5, True), (4.0, False), (4.5, True)):
        assert throttle.moved(now) is fires, now


def test_none_starts_while_the_last_is_on_its_way():
    throttle = LiveThrottle(0.5)
    # (time, the last live re-blend still on its way, whether one starts now): the one started at 0.5
    # landed between 1.75 and 1.875, so the next goes out on the first move after, and the interval
    # counts from there.
    for now, busy, fires in ((0.0, False, False), (0.5, False, True), (1.0, True, False), (1.75, True, False),
                             (1.875, False, True), (2.0, False, False), (2.25, True, False), (2.375, False, True)):
        assert throttle.moved(now, busy) is fires, now


def test_polling_faster_than_the_interval_adds_no_reblends():
    throttle = LiveThrottle(400)  # any unit: milliseconds here, to keep the sums exact
    fired = [t for t in range(0, 2001, 60) if throttle.moved(t)]
    # The clock starts at 0; then the first poll at or after 400 (420), 420 + 400 (840), 1260, 1680.
    assert fired == [420, 840, 1260, 1680]


def test_live_interval_is_offered_only_with_auto_reblend_and_fast(qapp):
    panel = Panel()
    changed = []
    panel.settings_changed.connect(lambda: changed.append(panel.values().live_interval_ms))
    assert panel.live_interval.value() == Settings().live_interval_ms == 400
    assert (panel.live_interval.minimum(), panel.live_interval.maximum()) == (100, 5000)
    assert "Auto re-blend and Fast" in panel.live_interval.toolTip()
    assert not panel.live_interval.isEnabled()
    panel.show_health(health(PRESET))
    panel.auto_reblend.click()
    assert not panel.live_interval.isEnabled()  # Fast is still off
    panel.fast.click()
    assert panel.live_interval.isEnabled()
    panel.live_interval.setValue(250)
    assert changed[-1] == 250
    panel.auto_reblend.click()
    assert not panel.live_interval.isEnabled()
    panel.auto_reblend.click()
    panel.show_health(health())  # a server without a preset turns Fast off, and so the live interval
    assert not panel.fast.isChecked() and not panel.live_interval.isEnabled()
    panel.deleteLater()


def test_live_interval_round_trips_through_the_panel_and_the_store(qapp, tmp_path):
    panel = Panel()
    panel.show_health(health(PRESET))
    panel.apply(Settings(auto_reblend=True, fast=True, live_interval_ms=250))
    assert panel.live_interval.isEnabled() and panel.values().live_interval_ms == 250
    panel.apply(Settings(auto_reblend=True, fast=False, live_interval_ms=20))
    assert not panel.live_interval.isEnabled()
    assert panel.values().live_interval_ms == 100  # held to the box's range
    panel.deleteLater()

    path = str(tmp_path / "lf.ini")
    store.save(QSettings(path, QSettings.Format.IniFormat), Settings(live_interval_ms=750))
    assert store.load(QSettings(path, QSettings.Format.IniFormat)).live_interval_ms == 750  # ini: strings
    raw = QSettings(path, QSettings.Format.IniFormat)
    raw.setValue("LayerFusion/live_interval_ms", "often")
    raw.sync()
    assert store.load(QSettings(path, QSettings.Format.IniFormat)).live_interval_ms == 400


def test_the_last_latency_is_shown_and_kept(qapp):
    panel = Panel()
    assert panel.latency.text() == ""
    panel.show_latency(0.84)
    panel.show_message("Re-blending…")  # other messages do not take it away
    assert panel.latency.text() == "Last re-blend 0.8 s"
    panel.deleteLater()
