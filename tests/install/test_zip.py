"""install.py --zip: the archive Krita's "Import Python Plugin from File..." accepts."""
from __future__ import annotations

import configparser
import zipfile
from pathlib import Path

ZIP_NAME = "layerfusion-krita-plugin.zip"


def test_zip_has_manifest_on_top_and_package_beside_it(installer, home, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out = installer.run(home, "--zip", "--out", str(out_dir)).stdout
    archive = out_dir / ZIP_NAME
    assert str(archive) in out and "Import Python Plugin from File" in out

    with zipfile.ZipFile(str(archive)) as z:
        names = z.namelist()
        assert z.testzip() is None
        desktop = configparser.RawConfigParser()
        desktop.read_string(z.read("layerfusion.desktop").decode("utf-8"))
        files = {n: z.read(n) for n in names if not n.endswith("/")}
    assert desktop["Desktop Entry"]["X-KDE-Library"] == "layerfusion"
    assert "Krita/PythonPlugin" in desktop["Desktop Entry"]["ServiceTypes"]
    # Krita's importer looks for the package's own directory entry with an __init__.py inside.
    assert "layerfusion/" in names and "layerfusion/__init__.py" in names
    assert {n.split("/")[0] for n in names} == {"layerfusion.desktop", "layerfusion"}
    assert files == installer.expected_files()  # exactly what install.py puts in pykrita, protocol included
    assert "layerfusion/_shared/protocol.py" in files
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert "layerfusion/server.json" not in names  # machine-specific: only install.py writes it


def test_zip_is_rebuilt_byte_for_byte(installer, home, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    installer.run(home, "--zip", "--out", str(out_dir))
    first = (out_dir / ZIP_NAME).read_bytes()
    mtime = (out_dir / ZIP_NAME).stat().st_mtime_ns
    out = installer.run(home, "--zip", "--out", str(out_dir)).stdout
    assert "unchanged" in out
    assert (out_dir / ZIP_NAME).read_bytes() == first
    assert (out_dir / ZIP_NAME).stat().st_mtime_ns == mtime
