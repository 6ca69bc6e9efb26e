"""Settings persistence through QSettings, and the canvas-to-model size mapping the plugin uses."""
from __future__ import annotations

import dataclasses

import pytest

from layerfusion import settings as store
from layerfusion.wire import sizes


def test_settings_round_trip(qapp, tmp_path):
    from layerfusion.qt import QSettings

    path = str(tmp_path / "lf.ini")
    values = store.Settings(
        server_url="http://127.0.0.1:9999", foreground_prompt="a glass", background_prompt="a table",
        negative_prompt="blur", blend="alpha", seed=4294967295, random_seed=False, steps=33, guidance=4.5,
        strength=0.35, threshold=0.4, boundary_coefficient=float("inf"), mask_source="cross",
        content_prior="prior_block", auto_reblend=True,
        target_pixels=128 * 128, history_limit=5)
    store.save(QSettings(path, QSettings.Format.IniFormat), values)
    loaded = store.load(QSettings(path, QSettings.Format.IniFormat))  # a fresh object reads the file
    assert loaded == values


def test_damaged_settings_fall_back_to_defaults(qapp, tmp_path):
    from layerfusion.qt import QSettings

    path = str(tmp_path / "lf.ini")
    raw = QSettings(path, QSettings.Format.IniFormat)
    raw.setValue("LayerFusion/steps", "many")
    raw.setValue("LayerFusion/auto_reblend", "true")
    raw.sync()
    loaded = store.load(QSettings(path, QSettings.Format.IniFormat))
    assert loaded.steps == store.Settings().steps
    assert loaded.auto_reblend is True


def test_method_options_come_from_settings():
    options = store.Settings(threshold=0.3, boundary_coefficient=5.0, mask_source="self",
                             content_prior="prior_block").method_options()
    assert (options.threshold, options.boundary_coefficient, options.mask_source.value) == (0.3, 5.0, "self")
    assert options.content_prior.value == "prior_block"


@pytest.mark.parametrize(
    "canvas, expected",
    [((1024, 1024), (1024, 1024)), ((2048, 2048), (1024, 1024)), ((1920, 1080), (1344, 768)),
     ((100, 100), (1024, 1024))],
)
def test_canvas_maps_to_sdxl_friendly_size(canvas, expected):
    w, h = sizes.generation_size(*canvas)
    assert (w, h) == expected
    assert w % 64 == 0 and h % 64 == 0


@pytest.mark.parametrize("canvas", [(3000, 4000), (1234, 567), (640, 2560), (8000, 1000)])
def test_mapped_size_keeps_aspect_near_one_megapixel(canvas):
    w, h = sizes.generation_size(*canvas)
    aspect = min(max(canvas[0] / canvas[1], 0.25), 4.0)
    assert w % 64 == 0 and h % 64 == 0
    assert abs((w / h) / aspect - 1) < 0.1
    assert 0.7 < w * h / (1024 * 1024) < 1.3


def test_small_target_for_the_tiny_model():
    assert sizes.generation_size(128, 128, 128 * 128) == (128, 128)
    w, h = sizes.generation_size(300, 150, 128 * 128)
    assert w > h and w % 64 == 0


def test_settings_fields_are_all_persisted():
    # Every field must survive: a new field without a QSettings-friendly type would break load().
    for f in dataclasses.fields(store.Settings):
        assert isinstance(getattr(store.Settings(), f.name), (str, int, float, bool))
