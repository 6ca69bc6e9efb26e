"""README.md, .ci/run and install.py tell the same story: CI runs exactly the README's test command."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[2]


def fenced_blocks(section: str) -> List[List[str]]:
    """Lines of each ```sh block under the README heading that starts with ``section``."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"^## " + re.escape(section) + r".*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "README.md has no section " + section
    return [[line for line in block.strip().splitlines()]
            for block in re.findall(r"^```sh\n(.*?)^```", match.group(1), re.M | re.S)]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = REPO / ".ci" / "run"
    assert os.access(str(ci), os.X_OK)
    readme = fenced_blocks("Tests")[0]
    assert [line.split("  #")[0].strip() for line in readme] == ["python3 install.py --dev --cluster",
                                                                 ".venv/bin/python -m pytest"]
    printed = subprocess.run(["bash", str(ci), "--print-test-command"], cwd=str(REPO), stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout.strip()
    assert printed == readme[1]
    script = ci.read_text()
    assert "python3 install.py --dev --cluster --torch cpu" in script and 'eval "$test_command"' in script


def test_readme_first_commands_set_up_then_generate() -> None:
    setup, generate = fenced_blocks("Set up and generate")[0]
    assert setup == "python3 install.py"
    assert generate.startswith(".venv/bin/layerfusion generate ")
    text = (REPO / "README.md").read_text()
    assert "noise" in text.lower() and "--models sdxl" in text


def test_every_install_option_the_readme_names_exists() -> None:
    text = (REPO / "README.md").read_text()
    help_text = subprocess.run([sys.executable, str(REPO / "install.py"), "--help"], stdout=subprocess.PIPE,
                               universal_newlines=True, check=True).stdout
    named = set(re.findall(r"install\.py((?: --[a-z-]+)+)", text))
    named |= set(re.findall(r"^\| `(--[a-z-]+)", text, re.M))
    options = {option for group in named for option in group.split()}
    assert {"--dev", "--zip", "--models", "--uninstall", "--plugin-only"} <= options
    for option in options:
        assert option in help_text, option


def test_install_py_is_python_3_8_syntax() -> None:
    """install.py must start on an old system python3 (to build the zip, or say it needs 3.10)."""
    import ast

    ast.parse((REPO / "install.py").read_text(), feature_version=(3, 8))


def test_readme_api_table_matches_the_servers_openapi() -> None:
    """Every request the README's API table names is one the server documents, and none is left out."""
    from backend.server.openapi import openapi_document

    section = (REPO / "README.md").read_text().split("## HTTP API in brief")[1].split("\n## ")[0]
    named = set()
    for method, path in re.findall(r"^\| `(GET|POST|DELETE) (/v1/[^`]*)`", section, re.M):
        path = re.sub(r"\{foreground\\?\|background\\?\|blend\}", "{name}", path)
        named.add((method.lower(), path))
    documented = {(method, path) for path, ops in openapi_document()["paths"].items()
                  for method in ops if method in ("get", "post", "delete")}
    assert named == documented
