"""A command-line run prints its own progress and results only; ``--verbose`` shows the rest."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROGRESS = re.compile(r"^generate: +\d+%\|[^|]*\| *\d+/\d+ \[[^\]]*\]$")  # tqdm's bar, one redraw
OWN_LINES = ("loading model 'tiny'…",)  # generate's own progress line before the bar
NOISE = ("warning", "torchvision", "traceback", " info ", " debug ")


def backend(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_generate_prints_its_progress_bar_and_result_lines_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = backend("generate", "--model", "tiny", "--fg", "a glass of water", "--bg", "a wooden table",
                     "--size", "64x64", "--steps", "2", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    pieces = [p.strip() for p in re.split(r"[\r\n]", result.stderr) if p.strip()]
    bars = [p for p in pieces if PROGRESS.match(p)]
    assert bars, result.stderr  # the bar is there ...
    assert [p for p in pieces if p not in bars and p not in OWN_LINES] == []  # ... and nothing else
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wrote ") and str(out) in lines[0], result.stdout
    for text in (result.stderr.lower(), result.stdout.lower()):
        for word in NOISE:
            assert word not in text, (word, text)


QUIET_PROBE = """
import logging, sys
from backend.cli import quiet
quiet.configure(sys.argv[1] == "verbose", "generate")
logging.getLogger("transformers.utils.import_utils").warning(
    "`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil`")
logging.getLogger("transformers.utils.import_utils").warning("some other transformers warning")
logging.getLogger("backend.models.loading").info("an info line")
logging.getLogger("backend.models.loading").warning("a warning of ours")
"""


def probe(mode: str) -> str:
    result = subprocess.run([sys.executable, "-c", QUIET_PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_only_the_notice_the_user_cannot_act_on_is_dropped() -> None:
    stderr = probe("quiet")
    assert "torchvision" not in stderr
    assert "some other transformers warning" in stderr and "a warning of ours" in stderr
    assert "an info line" not in stderr  # generate logs warnings and errors only


def test_verbose_keeps_library_warnings_and_logs_more() -> None:
    stderr = probe("verbose")
    assert "requires torchvision" in stderr and "some other transformers warning" in stderr
    assert "an info line" in stderr


def test_verbose_is_a_global_flag() -> None:
    help_text = backend("--help").stdout
    assert "--verbose" in help_text
    assert "--verbose" not in backend("generate", "--help").stdout  # one place for it: before the command
