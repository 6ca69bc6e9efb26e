"""install.py --plugin-only in a temporary HOME: where files land, kritarc, idempotence, uninstall."""
from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest

PRIOR_KRITARC = {
    "none": None,
    "python section": "[General]\nfoo=1\n\n[python]\nenable_other=true\n\n[Theme]\nTheme=Krita dark\n",
    "disabled before": "[python]\nenable_layerfusion=false\nenable_other=true\n",
    "no python section": "[General]\nCaseSensitiveKey=Yes\n",
}


def read_kritarc(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True)
    parser.optionxform = str  # type: ignore[assignment]  # Krita's keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_plugin_lands_where_krita_looks_and_is_enabled(installer, home) -> None:
    home.config.mkdir()
    home.kritarc.write_text(PRIOR_KRITARC["python section"])
    out = installer.run(home, "--plugin-only").stdout

    for rel, data in installer.expected_files().items():
        assert (home.pykrita / rel).read_bytes() == data, rel
        assert str(home.pykrita / rel) in out  # the output names every file it put in place
    assert (home.pykrita / "layerfusion" / "_shared" / "protocol.py").is_file()
    server = json.loads((home.pykrita / "layerfusion" / "server.json").read_text())
    assert server == {"python": str(installer.repo / ".venv" / "bin" / "python"), "repo": str(installer.repo),
                      "model": "tiny"}  # the plugin's local server works offline out of the box

    rc = read_kritarc(home.kritarc)
    assert rc["python"]["enable_layerfusion"] == "true"
    assert rc["python"]["enable_other"] == "true"
    assert rc["General"]["foo"] == "1" and rc["Theme"]["Theme"] == "Krita dark"
    assert "Next:" in out and "NOISE" in out


def test_second_run_changes_nothing(installer, home) -> None:
    installer.run(home, "--plugin-only")
    before = home.snapshot()
    out = installer.run(home, "--plugin-only").stdout
    assert home.snapshot() == before
    assert "Nothing changed" in out
    assert " installed " not in out and " updated " not in out
    assert out.count("unchanged") >= len(installer.expected_files()) + 2  # + server.json, kritarc


def test_changed_source_is_updated_and_reported(installer, home, tmp_path: Path) -> None:
    venv = tmp_path / "other-venv"
    installer.run(home, "--plugin-only")
    out = installer.run(home, "--plugin-only", "--venv", str(venv)).stdout
    assert "updated" in out and "server.json" in out
    server = json.loads((home.pykrita / "layerfusion" / "server.json").read_text())
    assert server["python"] == str(venv / "bin" / "python")


def test_served_model_chosen_earlier_is_kept(installer, home) -> None:
    installer.run(home, "--plugin-only")
    path = home.pykrita / "layerfusion" / "server.json"
    path.write_text(path.read_text().replace('"tiny"', '"sdxl"'))  # what a run with --models sdxl leaves
    installer.run(home, "--plugin-only")
    assert json.loads(path.read_text())["model"] == "sdxl"


@pytest.mark.parametrize("prior", sorted(PRIOR_KRITARC))
def test_uninstall_restores_everything(installer, home, prior: str) -> None:
    other_plugin = home.pykrita / "otherplugin.desktop"
    other_plugin.parent.mkdir(parents=True)
    other_plugin.write_text("[Desktop Entry]\n")
    if PRIOR_KRITARC[prior] is not None:
        home.config.mkdir()
        home.kritarc.write_text(PRIOR_KRITARC[prior])
    original = {rel: digest for rel, (digest, _) in home.snapshot().items()}

    installer.run(home, "--plugin-only")
    assert read_kritarc(home.kritarc)["python"]["enable_layerfusion"] == "true"
    out = installer.run(home, "--plugin-only", "--uninstall").stdout

    assert {rel: digest for rel, (digest, _) in home.snapshot().items()} == original
    assert "removed" in out
    assert "Nothing to remove" in installer.run(home, "--plugin-only", "--uninstall").stdout


def test_uninstall_keeps_settings_krita_added_meanwhile(installer, home) -> None:
    installer.run(home, "--plugin-only")
    # Krita rewrites kritarc on exit: new keys, new sections, its own order.
    home.kritarc.write_text("[MainWindow]\nState=abc\n\n[python]\nenable_layerfusion=true\nenable_x=true\n")
    installer.run(home, "--plugin-only", "--uninstall")
    assert home.kritarc.read_text() == "[MainWindow]\nState=abc\n\n[python]\nenable_x=true\n"


def test_flatpak_location_gets_a_copy_when_the_app_is_there(installer, home) -> None:
    flatpak = home.root / "home" / ".var" / "app" / "org.kde.krita"
    flatpak.mkdir(parents=True)
    installer.run(home, "--plugin-only")
    for pykrita, kritarc in ((home.pykrita, home.kritarc),
                             (flatpak / "data" / "krita" / "pykrita", flatpak / "config" / "kritarc")):
        assert (pykrita / "layerfusion.desktop").is_file()
        assert (pykrita / "layerfusion" / "_shared" / "fields.py").is_file()
        assert read_kritarc(kritarc)["python"]["enable_layerfusion"] == "true"
    installer.run(home, "--plugin-only", "--uninstall")
    assert sorted(p.name for p in flatpak.rglob("*")) == []


def test_krita_dir_override(installer, home, tmp_path: Path) -> None:
    resources = tmp_path / "portable-krita"
    installer.run(home, "--plugin-only", "--krita-dir", str(resources))
    assert (resources / "pykrita" / "layerfusion" / "__init__.py").is_file()
    assert not home.pykrita.exists()
    assert read_kritarc(home.kritarc)["python"]["enable_layerfusion"] == "true"


def test_kritarc_bytes_that_are_not_utf8_survive(installer, home) -> None:
    home.config.mkdir()
    original = b"[General]\nName=caf\xe9\n\n[python]\nenable_other=true\n"
    home.kritarc.write_bytes(original)
    installer.run(home, "--plugin-only")
    assert b"Name=caf\xe9\n" in home.kritarc.read_bytes()
    installer.run(home, "--plugin-only", "--uninstall")
    assert home.kritarc.read_bytes() == original
