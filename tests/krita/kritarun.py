"""Running a scenario module inside real Krita with kritarunner, and finding out what it reported."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict

from tests.plugin.launch import REPO

HERE = Path(__file__).resolve().parent


def kritarunner() -> str | None:
    return shutil.which("kritarunner")


def run_scenario(module: str, cfg: Dict[str, Any], workdir: Path, timeout: float = 1800) -> Dict[str, Any]:
    """kritarunner's exit status is unreliable (KRITA.md): the scenario's result file is the verdict."""
    # ``timeout`` only guards against a hang: Krita starting and six jobs on a loaded machine are slow.
    cfg = dict(cfg, workdir=str(workdir), result=str(workdir / (module + ".json")))
    config = workdir / (module + ".config.json")
    config.write_text(json.dumps(cfg))
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        PYTHONPATH=os.pathsep.join([str(HERE), str(REPO / "krita_plugin"), str(REPO)]),
        LF_SCENARIO_CONFIG=str(config),
        HOME=str(workdir / "home"),  # a throw-away profile: no user plugins, settings or recent files
        XDG_CONFIG_HOME=str(workdir / "home" / ".config"),
        XDG_DATA_HOME=str(workdir / "home" / ".local" / "share"),
    )
    (workdir / "home").mkdir(exist_ok=True)
    log = workdir / (module + ".log")
    with open(log, "w") as out:
        subprocess.run(["kritarunner", "-s", module], env=env, stdout=out, stderr=subprocess.STDOUT,
                       timeout=timeout, cwd=str(workdir))
    result = Path(cfg["result"])
    if not result.exists():
        tail = log.read_text(errors="replace")[-3000:]
        raise AssertionError("Krita wrote no result; log tail:\n" + tail)
    facts = json.loads(result.read_text())
    if "error" in facts:
        raise AssertionError("the scenario failed inside Krita:\n" + facts["error"])
    return facts
