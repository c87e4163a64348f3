"""Runs a stage under tests/scripts/sigkill.py, kills it at chosen moments, checks what each kill left."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.helpers.project import STAGES, declared_outputs, environment_with_code

TIMINGS = "metrics/speed/"  # timing metrics differ from run to run: only their keys are compared
RUN_TIMEOUT_S = 300


def _digest(path: Path, relative: str) -> object:
    """A file's sha256, or for timing metrics their keys (or a mark that the JSON is not whole)."""
    data = path.read_bytes()
    if not relative.startswith(TIMINGS):
        return hashlib.sha256(data).hexdigest()
    try:
        return sorted(json.loads(data))
    except ValueError:
        return "not whole JSON"


def _snapshot(project: Path, outputs: list[str]) -> dict[str, object]:
    """Each output's content: None when absent, a file's digest, a folder's {file: digest}."""
    state: dict[str, object] = {}
    for output in outputs:
        path = project / output
        if path.is_dir():
            state[output] = {str(file.relative_to(path)): _digest(file, str(file.relative_to(project)))
                             for file in sorted(path.rglob("*")) if file.is_file()}
        else:
            state[output] = _digest(path, output) if path.is_file() else None
    return state


def _is_hidden(relative: Path) -> bool:
    """Whether a path inside the project has a dot-named part: no stage reads those."""
    return any(part.startswith(".") for part in relative.parts)


def _hidden_entries(project: Path) -> list[str]:
    return sorted(str(p.relative_to(project)) for p in project.rglob("*")
                  if _is_hidden(p.relative_to(project)))


def _visible_files(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*")
            if p.is_file() and not _is_hidden(p.relative_to(project))}


class Killer:
    """Runs one stage in a project under tests/scripts/sigkill.py, kills it at chosen moments and
    checks what each kill left."""

    def __init__(self, project: Path, module: str, outputs: list[str]) -> None:
        self.project, self.module, self.outputs = project, module, outputs
        self.after_kills: list[tuple[str, dict[str, object]]] = []
        self.inputs = _visible_files(project)
        self.log = project.parent / f"{project.name}-events.log"
        scratch = project.parent / f"{project.name}-tmp"
        scratch.mkdir(exist_ok=True)
        self.environment = {**environment_with_code(), "TMPDIR": str(scratch),
                            "TF_CPP_MIN_LOG_LEVEL": "2"}

    @classmethod
    def for_stage(cls, project: Path, stage: str) -> Killer:
        return cls(project, STAGES[stage]["cmd"].removeprefix("python -m "), declared_outputs(stage))

    def inputs_changed(self) -> None:
        """Takes the project's current visible files, outputs aside, as the stage's inputs."""
        self.inputs = {file for file in _visible_files(self.project) if not self._in_outputs(file)}

    def run(self, kill: str, project: Path | None = None) -> tuple[bool, list[str]]:
        """Runs the stage with `kill` (see tests/scripts/sigkill.py): whether it ran to the end, and
        the events it logged. A kill is recorded with what it left."""
        self.log.unlink(missing_ok=True)
        command = [sys.executable, "-m", "tests.scripts.sigkill", str(self.log), kill,
                   os.pathsep.join(self.outputs), self.module]
        result = subprocess.run(command, cwd=project or self.project, env=self.environment,
                                capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        events = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        if result.returncode == -signal.SIGKILL:
            landed = [event.removeprefix("killed ") for event in events if event.startswith("killed ")]
            assert landed, f"{self.module} died of a SIGKILL the harness did not send"
            self._record(landed[-1])
            return False, events
        assert result.returncode == 0, f"{self.module} failed:\n{result.stderr}"
        return True, events

    def outputs_written(self) -> list[str]:
        """The outputs a complete run writes to from Python, in order of first write: counted on a
        run in a copy of the project, which is then removed."""
        copy = self.project.parent / f"{self.project.name}-count"
        shutil.copytree(self.project, copy, symlinks=True)
        try:
            completed, events = self.run("none", project=copy)
        finally:
            shutil.rmtree(copy)
        assert completed, f"{self.module} was killed without being asked to"
        written = [event.split(" ", 2)[1] for event in events if event.startswith("write ")]
        return list(dict.fromkeys(output for output in written if output != "-"))

    def kill_everywhere(self) -> int:
        """Kills one run inside the first write to each output, then runs before their 1st, 2nd, ...
        output rename until one completes; each kill must land. Returns the number of rename kills."""
        written = self.outputs_written()
        assert written, f"{self.module} writes no output from Python: no write to kill it inside"
        for output in written:
            completed, _ = self.run(f"write:{output}")
            assert not completed, f"{self.module} finished before it was killed inside a write of {output}"
        for rename in itertools.count(1):
            completed, _ = self.run(f"rename:{rename}")
            if completed:
                return rename - 1

    def assert_outputs_whole(self, *complete: dict[str, object], fresh: bool) -> None:
        """Every output after every kill so far is one of the `complete` versions, or absent where
        that is whole too: in a fresh project, or for a folder being swapped for its new version."""
        for moment, taken in self.after_kills:
            for output in self.outputs:
                versions = [version[output] for version in complete]
                if fresh or all(isinstance(version, dict) for version in versions):
                    versions.append(None)
                assert taken[output] in versions, \
                    f"{self.module} killed {moment}: {output} is partial, not a complete version"
        self.after_kills.clear()

    def _in_outputs(self, file: str) -> bool:
        return any(file == output or file.startswith(f"{output}/") for output in self.outputs)

    def _record(self, moment: str) -> None:
        left = {file for file in _visible_files(self.project) - self.inputs
                if not self._in_outputs(file)}
        assert not left, f"{self.module} killed {moment} left visible files {sorted(left)}"
        self.after_kills.append((moment, _snapshot(self.project, self.outputs)))


def kill_at_every_moment(killer: Killer, change: Callable[[Path], None]) -> None:
    """Kills a fresh run, then a rerun with `change` applied to the project, inside its first write
    to each output and before each output rename in turn; after every kill each output must be a
    complete version (or absent where that is whole too), and no hidden leftovers may remain."""
    renames = killer.kill_everywhere()
    first = _snapshot(killer.project, killer.outputs)
    assert None not in first.values(), f"a complete run wrote {first}"
    killer.assert_outputs_whole(first, fresh=True)
    assert renames, f"{killer.module} renamed no output into place: no rename to kill it before"

    change(killer.project)
    killer.inputs_changed()
    renames = killer.kill_everywhere()
    second = _snapshot(killer.project, killer.outputs)
    assert second[killer.outputs[0]] != first[killer.outputs[0]], "the change changed nothing"
    killer.assert_outputs_whole(first, second, fresh=False)
    assert renames, f"{killer.module} renamed no output into place: no rename to kill it before"
    assert _hidden_entries(killer.project) == []
