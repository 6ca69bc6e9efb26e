"""``python -m backend ablate``: the supplement's Fig. 3 contact sheet, on the tiny model."""
import itertools
import json

import numpy as np
import pytest
from PIL import Image

from backend.cli import ablate, main

ROWS = {
    "a": ["given", "neon", "snow"],
    "b": ["foreground", "background", "alpha", "generative"],
    "c": [f"{s}-{part}" for s in ("self", "cross", "product") for part in ("blend", "soft", "hard")],
    "d": ["k1", "k5", "k10", "k20", "kinf"],
    "e": ["before", "after"],
}


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate")
    code = main(["ablate", "--fg", "a glass of water", "--bg", "a wooden table", "--size", "64x64",
                 "--steps", "2", "--seed", "7", "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "ablation.json").read_text())


def by_row(record):
    return {row: [t for t in record["tiles"] if t["row"] == row] for row in ROWS}


def test_sheet_size_is_the_layouts(ablation):
    out, record = ablation
    rows = list(by_row(record).values())
    sizes = [[Image.open(out / t["file"]).size for t in row] for row in rows]
    plan = ablate.layout(sizes, [[t["label"] for t in row] for row in rows], list(ablate.TITLES.values()))
    sheet = Image.open(out / "ablation.png")
    assert sheet.size == plan.size == (record["sheet"]["width"], record["sheet"]["height"])
    assert sheet.mode == "RGB" and sheet.getpixel((0, 0)) == (255, 255, 255)
    assert sizes[0] == [(64, 64)] * 3 and sizes[3] == [(64, 128)] * 5  # tiles keep the image size


def test_layout_grows_by_a_tile_and_a_gap_per_tile():
    one = ablate.layout([[(64, 64)]], [["x"]], ["title"])
    three = ablate.layout([[(64, 64)] * 3], [["x"] * 3], ["title"])
    two_rows = ablate.layout([[(64, 64)], [(64, 128)]], [["x"], ["x"]], ["title", "title"])
    assert three.size == (one.size[0] + 2 * (64 + ablate.PAD), one.size[1])
    assert two_rows.size[1] == one.size[1] + 128 + ablate.CAPTION_GAP + ablate.line_height() + ablate.PAD
    assert [len(row) for row in three.tiles] == [3] and three.tiles[0][0][0] > three.titles[0][0]


def test_tiles_folder_holds_every_tile_by_row_and_label(ablation):
    out, record = ablation
    expected = {f"{row}-{label}.png" for row, labels in ROWS.items() for label in labels}
    assert {p.name for p in (out / "tiles").iterdir()} == expected
    assert len(expected) == 23 == len(record["tiles"])
    assert {row: [t["label"] for t in tiles] for row, tiles in by_row(record).items()} == ROWS


def test_json_lists_every_tiles_request(ablation):
    out, record = ablation
    tiles = by_row(record)
    assert all((out / t["file"]).is_file() and t["params"]["seed"] == 7 for t in record["tiles"])
    assert {t["params"]["options"]["mask_source"] for t in tiles["c"]} == {"self", "cross", "product"}
    assert [t["params"]["options"]["boundary_coefficient"] for t in tiles["d"]] == [1, 5, 10, 20, "inf"]
    assert [t["params"]["blend"] for t in tiles["b"][2:]] == ["alpha", "generative"]
    backgrounds = [t["params"]["background_prompt"] for t in tiles["a"]]
    assert backgrounds[0] == "a wooden table" and len(set(backgrounds)) == 3
    after = tiles["e"][1]["params"]
    assert after["kind"] == "reblend" and after["strength"] == 0.5 and after["steps"] == 2
    assert "foreground_png" not in after and "foreground_png" in tiles["e"][1]["inputs"]
    assert record["engine_runs"] == 12  # 14 jobs; (a) given, (b) generative and (c) product are one


def test_background_prompt_changes_the_foreground(ablation):
    out, record = ablation
    foregrounds = [np.asarray(Image.open(out / t["file"]), dtype=np.int16) for t in by_row(record)["a"]]
    for first, second in itertools.combinations(foregrounds, 2):
        assert np.abs(first - second).mean() > 0


def test_reblend_after_a_move_changes_the_blend(ablation):
    out, _ = ablation
    before, after = (np.asarray(Image.open(out / "tiles" / f"e-{n}.png"), dtype=np.int16) for n in ("before", "after"))
    assert before.shape == after.shape == (64, 64, 3) and np.abs(before - after).mean() > 1


def test_bad_steps_exits_2_naming_the_field(tmp_path, capsys):
    code = main(["ablate", "--fg", "a", "--bg", "b", "--size", "64x64", "--steps", "0", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "error (steps):" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
