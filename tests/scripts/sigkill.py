"""Runs a module like `python -m MODULE`, logging its writes and output renames, and SIGKILLs itself
at the moment asked for.

    python -m tests.scripts.sigkill LOG KILL OUTPUT[:OUTPUT...] MODULE

KILL is `none`, `write:OUTPUT` (inside the first write to a file of that output: the output file,
a file in the output folder, or one in its hidden temporary folder `.NAME.tmp-*` beside it) or
`rename:N` (just before the N-th rename whose source or destination is an output or lies in one).
The process kills itself inside a write by writing half of the data, flushing it to the file and
sending itself SIGKILL: the file is left partial, as a crash mid-write would leave it.

LOG gets one line per event, paths relative to the working directory (the project):
`write OUTPUT PATH` at the first write to each file in the project (OUTPUT is `-` for files of no
output), `rename SOURCE DESTINATION` for each output rename, and `killed ...` just before the kill,
so that the test can tell a kill that landed from a run that ended first.
"""

from __future__ import annotations

import builtins
import io
import itertools
import os
import runpy
import shutil
import signal
import sys
from collections.abc import Callable
from typing import Any


class Harness:
    """Watches one run: which output each path belongs to, the log, and the kill asked for."""

    def __init__(self, log: str, kill: str, outputs: list[str]) -> None:
        self.log = open(log, "a", encoding="utf-8")  # open until the process ends
        self.kind, _, self.target = kill.partition(":")
        self.outputs = outputs
        self.renames = itertools.count(1)

    def output_of(self, path: str) -> str | None:
        """The output `path` belongs to (itself, inside it, or in its hidden temporary), if any."""
        relative = os.path.relpath(os.path.abspath(path))
        for output in self.outputs:
            head, name = os.path.split(output)
            temporary = os.path.join(head, f".{name}.tmp-")
            if relative == output or relative.startswith((output + os.sep, temporary)):
                return output
        return None

    def record(self, line: str) -> None:
        self.log.write(line + "\n")
        self.log.flush()

    def kill(self, line: str) -> None:
        self.record(f"killed {line}")
        os.kill(os.getpid(), signal.SIGKILL)

    def first_write(self, handle: Any, path: str, data: bytes | str) -> None:
        output = self.output_of(path)
        relative = os.path.relpath(os.path.abspath(path))
        self.record(f"write {output or '-'} {relative}")
        if self.kind == "write" and output == self.target:
            handle.write(data[: len(data) // 2])
            handle.flush()
            self.kill(f"inside a write of {relative}")

    def before_rename(self, source: str, destination: str) -> None:
        if self.output_of(source) is None and self.output_of(destination) is None:
            return
        number = next(self.renames)
        self.record(f"rename {os.path.relpath(source)} {os.path.relpath(destination)}")
        if self.kind == "rename" and number == int(self.target):
            self.kill(f"before rename {number}")


class WatchedFile:
    """A file opened for writing, passed through but for its first non-empty write."""

    def __init__(self, handle: Any, path: str, harness: Harness) -> None:
        self._handle, self._path, self._harness, self._written = handle, path, harness, False

    def write(self, data: bytes | str) -> int:
        if data and not self._written:
            self._written = True
            self._harness.first_write(self._handle, self._path, data)
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> WatchedFile:
        self._handle.__enter__()
        return self

    def __exit__(self, *exception: object) -> None:
        self._handle.__exit__(*exception)

    def __iter__(self) -> Any:
        return iter(self._handle)


def watching_open(real_open: Callable, harness: Harness) -> Callable:
    def opener(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, int) or not any(flag in mode for flag in "wax+"):
            return handle
        path = os.fsdecode(file)
        if os.path.relpath(os.path.abspath(path)).startswith(os.pardir):
            return handle  # outside the project: scratch space
        return WatchedFile(handle, path, harness)

    return opener


def watching_rename(rename: Callable, harness: Harness) -> Callable:
    def renamer(source: Any, destination: Any, *args: Any, **kwargs: Any) -> None:
        harness.before_rename(os.fsdecode(source), os.fsdecode(destination))
        rename(source, destination, *args, **kwargs)

    return renamer


def main() -> None:
    log, kill, outputs, module = sys.argv[1:5]
    harness = Harness(log, kill, [os.path.normpath(output) for output in outputs.split(os.pathsep)])
    builtins.open = io.open = watching_open(io.open, harness)
    os.rename = watching_rename(os.rename, harness)
    os.replace = watching_rename(os.replace, harness)
    # shutil copies with sendfile(2) when it can, which no Python-level write sees.
    shutil._USE_CP_SENDFILE = False
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
