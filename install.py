#!/usr/bin/env python3
"""LayerFusion for Krita: one-command set-up (standard library only, Python 3.8+).

    python3 install.py                 # backend environment (.venv) + Krita plugin, enabled
    python3 install.py --dev           # ... plus the test tools
    python3 install.py --cluster       # ... plus Ray, for a studio's backend (serve --cluster)
    python3 install.py --plugin-only   # just the Krita plugin
    python3 install.py --models sdxl   # ... and download the real SDXL + LayerDiffuse weights
    python3 install.py --zip           # dist/layerfusion-krita-plugin.zip for Krita's importer
    python3 install.py --uninstall     # take back what earlier runs put in place (also restores kritarc)

Idempotent: files are compared by hash, pip is skipped while the venv's requirements stamp matches.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent
PLUGIN = "layerfusion"
TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_INDEX = "https://download.pytorch.org/whl/cu128"  # Windows only: Linux PyPI wheels are CUDA builds
MANIFEST = ".layerfusion-install.json"  # beside the plugin in pykrita/: what we put there
STAMP = "layerfusion-install.json"  # inside the venv: what pip already installed
DIST = "layerfusion-krita"  # the backend's distribution name, as pyproject.toml's [project] has it
COMMAND = "layerfusion"  # its console command, pyproject.toml's [project.scripts]
ZIP_NAME = "layerfusion-krita-plugin.zip"
SECTION, KEY = "python", "enable_" + PLUGIN
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}


class Report:
    """Prints every action as it happens and remembers whether anything changed."""

    def __init__(self) -> None:
        self.changed = False
        self.problems: List[str] = []

    def did(self, verb: str, what: object) -> None:
        print("  {:<10} {}".format(verb, what), flush=True)
        if verb != "unchanged":
            self.changed = True

    def problem(self, text: str) -> None:
        print("  PROBLEM    " + text, flush=True)
        self.problems.append(text)


@dataclass(frozen=True)
class KritaTarget:
    label: str
    pykrita: Path
    kritarc: Path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def write_if_changed(path: Path, data: bytes, report: Report, label: Optional[str] = None) -> None:
    old = read_bytes(path)
    if old is not None and sha(old) == sha(data):
        report.did("unchanged", label or path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    report.did("updated" if old is not None else "installed", label or path)


# ---------------------------------------------------------------- where Krita looks, per OS
def krita_targets(args: argparse.Namespace) -> List[KritaTarget]:
    home = Path.home()
    system = platform.system()
    if system == "Windows":
        appdata = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
        local = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        targets = [KritaTarget("Krita", appdata / "krita" / "pykrita", local / "kritarc")]
    elif system == "Darwin":
        targets = [KritaTarget("Krita", home / "Library" / "Application Support" / "krita" / "pykrita",
                               home / "Library" / "Preferences" / "kritarc")]
    else:
        data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
        config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        targets = [KritaTarget("Krita", data / "krita" / "pykrita", config / "kritarc")]
        flatpak = home / ".var" / "app" / "org.kde.krita"
        if flatpak.is_dir():  # only when the Flatpak app has been installed (and run) here
            targets.append(KritaTarget("Krita (Flatpak)", flatpak / "data" / "krita" / "pykrita",
                                       flatpak / "config" / "kritarc"))
    if args.krita_dir:
        chosen = Path(args.krita_dir).expanduser().absolute()
        pykrita = chosen if chosen.name == "pykrita" else chosen / "pykrita"
        targets = [KritaTarget("Krita (--krita-dir)", pykrita, targets[0].kritarc)]
    if args.kritarc:
        targets = [KritaTarget(t.label, t.pykrita, Path(args.kritarc).expanduser().absolute())
                   for t in targets[:1]]
    return targets


# ---------------------------------------------------------------- plugin files
def tree_files(root: Path) -> List[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(str(root)):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.endswith((".pyc", ".pyo")))
    return out


def plugin_files() -> Dict[str, bytes]:
    """Relative path (forward slashes) -> bytes: manifest, package, and the protocol as ``_shared``."""
    source = REPO / "krita_plugin"
    desktop, package = source / (PLUGIN + ".desktop"), source / PLUGIN
    if not desktop.is_file() or not (package / "__init__.py").is_file():
        sys.exit("install.py: the plugin is missing from this checkout ({} and {}/__init__.py)."
                 .format(desktop, package))
    files = {PLUGIN + ".desktop": desktop.read_bytes()}
    for path in tree_files(package):
        rel = path.relative_to(package).as_posix()
        if rel != "server.json" and not rel.startswith("_shared/"):
            files[PLUGIN + "/" + rel] = path.read_bytes()
    for path in tree_files(REPO / "shared"):
        files[PLUGIN + "/_shared/" + path.relative_to(REPO / "shared").as_posix()] = path.read_bytes()
    return files


def venv_python(venv: Path) -> Path:
    if platform.system() == "Windows":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def venv_command(venv: Path) -> Path:
    """The ``layerfusion`` console command pip puts beside the venv's Python."""
    if platform.system() == "Windows":
        return venv / "Scripts" / (COMMAND + ".exe")
    return venv / "bin" / COMMAND


# ---------------------------------------------------------------- kritarc: line edits, never a rewrite
def kritarc_section(lines: List[str]) -> Tuple[Optional[int], int]:
    start, end = None, len(lines)
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("[") and text.endswith("]"):
            if start is not None:
                end = i
                break
            if text[1:-1] == SECTION:
                start = i
    return start, end


def kritarc_get(text: str) -> Optional[str]:
    lines = text.splitlines()
    start, end = kritarc_section(lines)
    for line in lines[(start + 1 if start is not None else end):end]:
        key, eq, value = line.partition("=")
        if eq and key.strip() == KEY:
            return value.strip()
    return None


def kritarc_set(text: str, value: Optional[str], drop_empty_section: bool = False) -> str:
    """Sets (or, with None, removes) KEY in [python], keeping every other byte of the file."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(True)
    start, end = kritarc_section(lines)
    if start is None:
        if value is None:
            return text
        head = text if not text or text.endswith("\n") else text + newline
        gap = newline if head.strip() else ""
        return "{}{}[{}]{}{}={}{}".format(head, gap, SECTION, newline, KEY, value, newline)
    for i in range(start + 1, end):
        key, eq, _ = lines[i].partition("=")
        if eq and key.strip() == KEY:
            if value is None:
                del lines[i]
                end -= 1
            else:
                ending = lines[i][len(lines[i].rstrip("\r\n")):] or newline
                lines[i] = "{}={}{}".format(KEY, value, ending)
            break
    else:
        if value is None:
            return text
        at = end
        while at > start + 1 and not lines[at - 1].strip():
            at -= 1
        if not lines[at - 1].endswith("\n"):
            lines[at - 1] += newline
        lines.insert(at, "{}={}{}".format(KEY, value, newline))
    if value is None and drop_empty_section and not any(line.strip() for line in lines[start + 1:end]):
        del lines[start:end]  # the section was ours and is empty again: take it and our gap line back
        if start > 0 and not lines[start - 1].strip() and (start == len(lines)):
            del lines[start - 1]
    return "".join(lines)


# ---------------------------------------------------------------- install / uninstall the plugin
def load_manifest(target: KritaTarget) -> Optional[dict]:
    data = read_bytes(target.pykrita / MANIFEST)
    return json.loads(data.decode("utf-8")) if data else None


def missing_dirs(path: Path) -> List[str]:
    out = []
    while not path.exists():
        out.append(str(path))
        path = path.parent
    return out


def server_model(args: argparse.Namespace, targets: List[KritaTarget]) -> str:
    """The model the plugin's "Start local server" serves: the real one once downloaded (now or by an
    earlier run), else the tiny offline one, which works everywhere (and paints noise)."""
    if args.models:
        return args.models
    for target in targets:
        try:
            return json.loads((target.pykrita / PLUGIN / "server.json").read_text(encoding="utf-8"))["model"]
        except (OSError, ValueError, KeyError):
            continue
    return "tiny"


def install_plugin(target: KritaTarget, files: Dict[str, bytes], report: Report) -> None:
    print("{}: {}".format(target.label, target.pykrita))
    old = load_manifest(target) or {}
    created_dirs = old.get("created_dirs") or missing_dirs(target.pykrita)
    for rel, data in sorted(files.items()):
        write_if_changed(target.pykrita / rel, data, report)
    for rel in sorted(set(old.get("files", [])) - set(files)):  # left over from an older version
        stale = target.pykrita / rel
        if stale.is_file():
            stale.unlink()
            report.did("removed", stale)
    rc_state = old.get("kritarc")
    if not rc_state or rc_state.get("path") != str(target.kritarc):
        before = read_bytes(target.kritarc)
        text = before.decode("utf-8", "surrogateescape") if before is not None else ""
        rc_state = {"path": str(target.kritarc), "previous": kritarc_get(text),
                    "created_file": before is None,
                    "created_section": kritarc_section(text.splitlines())[0] is None,
                    "created_dirs": missing_dirs(target.kritarc.parent)}
    before = read_bytes(target.kritarc)
    text = before.decode("utf-8", "surrogateescape") if before is not None else ""
    write_if_changed(target.kritarc, kritarc_set(text, "true").encode("utf-8", "surrogateescape"), report,
                     "{}  [{}] {}=true".format(target.kritarc, SECTION, KEY))
    manifest = {"version": 1, "repo": str(REPO), "files": sorted(files), "created_dirs": created_dirs,
                "kritarc": rc_state}
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    write_if_changed(target.pykrita / MANIFEST, data, report)


def remove_empty_dirs(dirs: List[Path], report: Report) -> None:
    for d in sorted(set(dirs), key=lambda p: len(p.parts), reverse=True):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
            report.did("removed", str(d) + os.sep)


def uninstall_plugin(target: KritaTarget, report: Report) -> None:
    print("{}: {}".format(target.label, target.pykrita))
    manifest = load_manifest(target)
    if manifest is None:
        print("  nothing of ours here (no {})".format(MANIFEST))
        return
    dirs = []
    for rel in manifest.get("files", []):
        path = target.pykrita / rel
        if path.is_file():
            path.unlink()
            report.did("removed", path)
        dirs.extend(p for p in path.parents if target.pykrita in p.parents)
    remove_empty_dirs(dirs, report)
    rc = manifest.get("kritarc") or {}
    rc_path = Path(rc.get("path", str(target.kritarc)))
    before = read_bytes(rc_path)
    if before is not None:
        current = before.decode("utf-8", "surrogateescape")
        restored = kritarc_set(current, rc.get("previous"), bool(rc.get("created_section")))
        if rc.get("created_file") and not restored.strip():
            rc_path.unlink()
            report.did("removed", rc_path)
            remove_empty_dirs([Path(d) for d in rc.get("created_dirs", [])], report)
        elif restored != current:
            rc_path.write_bytes(restored.encode("utf-8", "surrogateescape"))  # byte for byte
            was = rc.get("previous")
            report.did("restored", "{}  [{}] {}".format(
                rc_path, SECTION, KEY + "=" + was if was is not None else KEY + " removed"))
    (target.pykrita / MANIFEST).unlink()
    report.did("removed", target.pykrita / MANIFEST)
    remove_empty_dirs([Path(d) for d in manifest.get("created_dirs", [])], report)


def build_zip(out_dir: Path, report: Report) -> Path:
    """Krita's importer wants the .desktop file and the package directory entry (with __init__.py)."""
    files = plugin_files()
    dirs = {"/".join(rel.split("/")[:i]) + "/" for rel in files for i in range(1, rel.count("/") + 1)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(dirs | set(files)):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same bytes every run
            info.external_attr = ((0o40755 if name.endswith("/") else 0o100644) << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files.get(name, b""))
    path = out_dir / ZIP_NAME
    write_if_changed(path, buffer.getvalue(), report)
    return path


# ---------------------------------------------------------------- backend environment
def torch_variant(choice: str) -> str:
    if choice != "auto":
        return choice
    if platform.system() == "Darwin":
        return "mps" if platform.machine() == "arm64" else "cpu"
    if shutil.which("nvidia-smi"):
        probe = subprocess.run(["nvidia-smi", "-L"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.returncode == 0:
            return "cuda"
    return "cpu"


def torch_attempts(variant: str, index: Optional[str]) -> List[List[str]]:
    """pip arguments to try in order. CPU: a +cpu wheel pip already reaches (a local wheel house)
    first, then PyTorch's CPU index; the plain PyPI wheel on Linux is the large CUDA build."""
    spec = "torch==" + TORCH_VERSION
    if index is not None:
        return [[spec] + (["--index-url", index] if index else [])]
    if platform.system() == "Darwin" or variant == "mps":
        return [[spec]]
    if variant == "cpu":
        return [[spec + "+cpu"], [spec, "--index-url", CPU_INDEX]]
    return [[spec, "--index-url", CUDA_INDEX]] if platform.system() == "Windows" else [[spec]]


def pip(python: Path, args: List[str], quiet: bool = False) -> bool:
    command = [str(python), "-m", "pip", "install"] + args
    print("  running    " + " ".join(command), flush=True)
    out = subprocess.PIPE if quiet else None
    result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT if quiet else None)
    if result.returncode and quiet:
        print("  (that did not work; trying the next source)")
    return result.returncode == 0


def setup_environment(args: argparse.Namespace, venv: Path, report: Report) -> None:
    python = venv_python(venv)
    print("Backend environment: {}".format(venv))
    stamp_path = venv / STAMP
    if python.exists():
        report.did("unchanged", python)
        created = False
    else:
        if sys.version_info < (3, 10):
            sys.exit("install.py: the backend needs Python 3.10 or newer to build its environment; "
                     "run this with a newer python3 (or use --plugin-only / --zip).")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        report.did("created", venv)
        created = True
    stamp = json.loads((read_bytes(stamp_path) or b"{}").decode("utf-8"))
    stamp.setdefault("created_by_install", created)
    index = args.torch_index if args.torch_index is not None else os.environ.get("LAYERFUSION_TORCH_INDEX")
    variant = torch_variant(args.torch)
    torch_key = "{}|{}|{}".format(TORCH_VERSION, variant, index)
    new_torch = False
    if stamp.get("torch") == torch_key:
        report.did("unchanged", "torch {} ({})".format(TORCH_VERSION, variant))
    else:
        attempts = torch_attempts(variant, index)
        if stamp.get("torch"):  # another build is in place; pip would call it "already satisfied"
            attempts = [a + ["--force-reinstall", "--no-deps"] for a in attempts]
        if not any(pip(python, a, quiet=i < len(attempts) - 1) for i, a in enumerate(attempts)):
            sys.exit("install.py: torch {} could not be installed ({} build); see pip's message above."
                     .format(TORCH_VERSION, variant))
        stamp["torch"] = torch_key
        report.did("installed", "torch {} ({} build)".format(TORCH_VERSION, variant))
        new_torch = True
    wanted = (["requirements.txt"] + (["requirements-dev.txt"] if args.dev else [])
              + (["requirements-cluster.txt"] if args.cluster else []))
    done = stamp.setdefault("requirements", {})
    for name in wanted:
        digest = sha((REPO / name).read_bytes() + (REPO / "requirements.txt").read_bytes())
        if done.get(name) == digest:
            report.did("unchanged", name)
            continue
        if not pip(python, ["-r", str(REPO / name)]):
            sys.exit("install.py: pip could not install {}; see its message above.".format(name))
        done[name] = digest
        report.did("installed", name)
    if new_torch:  # after the requirements: torch imported without NumPy warns "Failed to initialize NumPy"
        check_torch(python, variant, report)
    install_package(venv, stamp, report)
    write_if_changed(stamp_path, (json.dumps(stamp, indent=2, sort_keys=True) + "\n").encode("utf-8"), report)


def package_key(repo: Path = REPO) -> str:
    """What the installed package was built from: pyproject.toml (entry point, packages, package data),
    the requirements it reads as its dependencies, and where the checkout is (an editable install points
    there). The code itself is not part of it: an editable install runs the checkout's files as they are."""
    return sha((repo / "pyproject.toml").read_bytes() + (repo / "requirements.txt").read_bytes()
               + str(repo).encode("utf-8"))


def install_package(venv: Path, stamp: dict, report: Report, repo: Path = REPO) -> None:
    """The backend as an installed package, so that ``.venv/bin/layerfusion`` works from any folder.

    Editable (``pip install -e``) on purpose: the command then runs this checkout's code, the same files
    the plugin's "Start local server" runs (server.json points at the checkout), and the tests test. Editing
    or pulling the checkout needs no reinstall, so skipping pip while pyproject.toml and the requirements
    are unchanged is correct. A regular install would copy the code into the venv, where it would silently
    go stale on every edit (or force hashing every source file to stay idempotent). ``--no-deps``: the
    requirements were installed just before, pinned, with the torch build chosen here."""
    key = package_key(repo)
    command = venv_command(venv)
    if stamp.get("package") == key and command.is_file():
        report.did("unchanged", "{} command ({} -e {})".format(COMMAND, DIST, repo))
        return
    if not pip(venv_python(venv), ["--no-deps", "-e", str(repo)]):
        sys.exit("install.py: pip could not install the backend package ({} -e {}); see its message above."
                 .format(DIST, repo))
    if not command.is_file():
        sys.exit("install.py: pip installed {} but {} is missing.".format(DIST, command))
    stamp["package"] = key
    report.did("installed", "{} command: {}".format(COMMAND, command))


def check_torch(python: Path, variant: str, report: Report) -> None:
    code = ("import torch, json; m = getattr(torch.backends, 'mps', None); "
            "print(json.dumps([torch.__version__, "
            "torch.cuda.is_available(), bool(m and m.is_available())]))")
    result = subprocess.run([str(python), "-c", code], stdout=subprocess.PIPE, universal_newlines=True)
    if result.returncode:
        report.problem("torch does not import in {}".format(python))
        return
    version, cuda, mps = json.loads(result.stdout.strip().splitlines()[-1])
    print("  torch {}: CUDA {}, MPS {}".format(version, "yes" if cuda else "no", "yes" if mps else "no"))
    if variant == "cuda" and not cuda:
        report.problem("a CUDA build was asked for but torch sees no CUDA device (got {})".format(version))


def download_models(venv: Path, name: str, report: Report) -> None:
    python = venv_python(venv)
    base = [str(python), "-m", "backend", "models"]
    probe = subprocess.run(base + ["--help"], cwd=str(REPO),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe.returncode:
        report.problem("this checkout's backend has no 'models' command yet, so the {} weights were not "
                       "downloaded. Later: {} -m backend models download {}".format(name, python, name))
        return
    print("Models: downloading {} (needs internet; several GB)".format(name))
    if subprocess.run(base + ["download", name], cwd=str(REPO)).returncode:
        report.problem("downloading the {} weights failed; see the message above".format(name))
    else:
        report.did("fetched", "models: " + name)


# ---------------------------------------------------------------- command line
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Set up LayerFusion for Krita: backend environment + Krita plugin.")
    p.add_argument("--venv", default=str(REPO / ".venv"), help="backend environment (default: .venv here)")
    p.add_argument("--torch", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="torch build: auto = CUDA with an NVIDIA GPU, MPS on Apple silicon, else CPU")
    p.add_argument("--torch-index", default=None, metavar="URL",
                   help="pip index for torch ('' = pip's own); also LAYERFUSION_TORCH_INDEX")
    p.add_argument("--dev", action="store_true", help="also install the test tools (requirements-dev.txt)")
    p.add_argument("--cluster", action="store_true",
                   help="also install Ray for the studio backend (serve --cluster; requirements-cluster.txt)")
    p.add_argument("--plugin-only", action="store_true", help="only the Krita plugin, no environment")
    p.add_argument("--models", choices=["sdxl"], help="download real weights after installing")
    p.add_argument("--krita-dir", help="Krita's resource folder (or its pykrita folder) to install into")
    p.add_argument("--kritarc", help="the kritarc to enable the plugin in")
    p.add_argument("--uninstall", action="store_true", help="remove what earlier runs put in place")
    p.add_argument("--zip", action="store_true", help="build {} for Krita's importer".format(ZIP_NAME))
    p.add_argument("--out", default=str(REPO / "dist"), help="folder for --zip (default: dist/)")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    report = Report()
    venv = Path(os.path.abspath(os.path.expanduser(args.venv)))
    if args.zip:
        print("Plugin archive:")
        path = build_zip(Path(os.path.abspath(args.out)), report)
        print("\nNext: in Krita, Tools > Scripts > Import Python Plugin from File... and pick\n  {}\n"
              "then restart Krita. (The archive holds no server settings: start the backend yourself.)"
              .format(path))
        return 0
    targets = krita_targets(args)
    if args.uninstall:
        for target in targets:
            uninstall_plugin(target, report)
        stamp = venv / STAMP
        if not args.plugin_only and stamp.is_file():
            state = json.loads(stamp.read_text(encoding="utf-8"))
            if state.get("created_by_install"):
                shutil.rmtree(str(venv))
                report.did("removed", venv)
            else:
                if state.get("package") and venv_python(venv).exists():  # someone else's venv: just ours
                    command = [str(venv_python(venv)), "-m", "pip", "uninstall", "-y", DIST]
                    if subprocess.run(command, stdout=subprocess.DEVNULL).returncode == 0:
                        report.did("removed", "{} ({} command)".format(DIST, COMMAND))
                stamp.unlink()
                report.did("removed", stamp)
        print("\n" + ("Uninstalled. Restart Krita." if report.changed else "Nothing to remove."))
        return 0
    files = plugin_files()
    files[PLUGIN + "/server.json"] = (json.dumps({"python": str(venv_python(venv)), "repo": str(REPO),
                                                  "model": server_model(args, targets)},
                                                 indent=2) + "\n").encode("utf-8")
    if not args.plugin_only:
        setup_environment(args, venv, report)
    for target in targets:
        install_plugin(target, files, report)
    if args.models:
        download_models(venv, args.models, report)
    print("\n" + ("Done." if report.changed else "Nothing changed: everything was already in place."))
    print_next(venv, args, report)
    return 1 if report.problems else 0


def print_next(venv: Path, args: argparse.Namespace, report: Report) -> None:
    python = venv_python(venv)
    here = Path.cwd()
    command = venv_command(venv)
    if command.is_file() or not python.exists():  # the installed command works from any folder
        run = str(command.relative_to(here)) if here in command.parents else str(command)
    else:  # a venv this run did not set up: `-m backend` runs from the checkout
        rel = str(python.relative_to(REPO)) if REPO in python.parents else str(python)
        run = "{}{} -m backend".format("" if here == REPO else "cd {} && ".format(REPO), rel)
    print("\nNext:")
    if args.plugin_only and not python.exists():
        print("  - the plugin expects the backend at {}: run `python3 install.py` to build it".format(python))
    print("  - restart Krita, then Settings > Dockers > LayerFusion; press 'Start local server' there,")
    print("    or run the backend yourself:  {} serve".format(run))
    print("  - try it without Krita:  {} generate --fg \"a glass of water\" "
          "--bg \"a wooden table\" --out outputs/first".format(run))
    if not args.models:
        print("  - the offline default is the tiny test model, which paints NOISE;"
              " for real pictures on a GPU:"
              "  python3 install.py --models sdxl")
    for problem in report.problems:
        print("  - fix: " + problem)


if __name__ == "__main__":
    sys.exit(main())
