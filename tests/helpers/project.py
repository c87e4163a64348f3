"""Test helpers: a copy of the project in its own git repo, and `dvc`/stage commands run in it
(one of them killed at a chosen epoch); the stages dvc.yaml declares and those dvc.lock records."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from captioner.core.files import read_json, write_json
from captioner.core.placed import MANIFEST, VECTORS, WEIGHTS, builtin_manifest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
SAMPLE = SHARED / "flickr8k-sample"
FULL = SHARED / "flickr8k"
# Small enough to run the whole pipeline on a drawn collection in well under a minute.
FAST_PARAMS = {
    "embed": {"dim": 32, "epoch": 5},
    "extract_features": {"max_bad_fraction": 0.1},
    "train": {"units": 64, "epochs": 2, "val_bleu_images": 20, "self_critical_epochs": 1,
              "ensemble": 1},
    "evaluate": {"report_images": 4},
}
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def environment() -> dict[str, str]:
    """This interpreter's bin folder first on PATH, so `python` in dvc.yaml's cmds is this venv's."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def environment_with_code() -> dict[str, str]:
    """`environment()` with this repository's code importable from any folder (PYTHONPATH)."""
    return {**environment(), "PYTHONPATH": str(ROOT)}


def run(command: list[str], cwd: Path, timeout: int = 900, check: bool = True,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs a command in `cwd`; with `check`, fails the test with its output if it fails."""
    result = subprocess.run(command, cwd=cwd, env={**environment(), **(extra_env or {})},
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def dvc(*arguments: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """Runs `dvc ARGUMENTS` with this interpreter."""
    return run([sys.executable, "-m", "dvc", *arguments], cwd, timeout)


def set_params(project: Path, changes: dict[str, dict]) -> None:
    """Updates params.yaml section by section."""
    path = project / "params.yaml"
    document = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        document[section].update(values)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def params_only_project(folder: Path, changes: dict[str, dict]) -> Path:
    """A new folder holding only params.yaml (this repository's, with `changes`): where a test runs
    one stage module on inputs it writes itself."""
    folder.mkdir()
    (folder / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    set_params(folder, changes)
    return folder


def copy_project(destination: Path, params: dict[str, dict]) -> Path:
    """The project's files (tracked and new, not ignored) in a fresh git repo, params applied."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if (ROOT / name).is_file() and not name.startswith(("metrics/", "data/", "dvc.lock")):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    set_params(destination, params)
    run(["git", "init", "-q"], destination)
    commit_all(destination, "copy of the project")
    return destination


def commit_all(project: Path, message: str) -> None:
    """Commits everything git does not ignore."""
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com",
         "commit", "-qm", message], project)


def up_to_date(project: Path) -> bool:
    """Whether `dvc status` finds nothing to run."""
    return json.loads(dvc("status", "--json", cwd=project).stdout) == {}


def declared_outputs(stage: str) -> list[str]:
    """The paths a stage declares in dvc.yaml as outs, metrics or plots, in that order."""
    entries = [*STAGES[stage].get("outs", []), *STAGES[stage].get("metrics", []),
               *STAGES[stage].get("plots", [])]
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]


def locked_stages(project: Path) -> dict[str, dict]:
    """Each stage's entry in the project's dvc.lock, by stage name."""
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"]


def stages_run(output: str) -> list[str]:
    """Names of the stages a `dvc repro` or `dvc exp run` output says it ran."""
    return [line.split("'")[1] for line in output.splitlines()
            if line.startswith("Running stage '")]


def place_builtin_pretrained(project: Path, vectors: str = "train", weights: str = "imagenet") -> None:
    """What the pretrained stage writes for built-in sources, for tests that run embed or
    extract_features without it."""
    for kind, builtin in ((VECTORS, vectors), (WEIGHTS, weights)):
        for path in (kind.folder / MANIFEST, kind.manifest_copy):
            write_json(project / path, builtin_manifest(builtin))


def kill_repro_after_epoch(project: Path, epochs_done: int, run: str = "data/train_run") -> None:
    """Starts `dvc repro train` and SIGKILLs it, and all it started, once the run in folder `run`
    has checkpointed `epochs_done` epochs."""
    progress = project / run / "progress.json"
    repro = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "train"], cwd=project,
                             env=environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and repro.poll() is None:
        if progress.is_file() and len(read_json(progress)["history"]) >= epochs_done:
            os.killpg(repro.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    repro.wait()
    assert repro.returncode == -signal.SIGKILL, "training ended before it could be killed"
