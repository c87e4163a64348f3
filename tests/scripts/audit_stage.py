"""Runs one stage module and records every file it opens, lists or renames into place.

    python tests/scripts/audit_stage.py stages.train EVENTS.json

Uses Python's audit hooks (PEP 578), so it sees what the stage really does, whatever module
opens the file. EVENTS.json gets a list of [kind, path] with kind "read" or "write".
"""

from __future__ import annotations

import json
import os
import runpy
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
events: list[tuple[str, str]] = []


def record(event: str, args: tuple) -> None:
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if mode else bool(flags & WRITE_FLAGS)
        if not mode and not writes:
            return  # os.open for reading: shutil.rmtree walking folders by name, relative to a dir fd
        events.append(("write" if writes else "read", os.path.abspath(os.fsdecode(path))))
    elif event in ("os.listdir", "os.scandir") and isinstance(args[0], (str, bytes, os.PathLike)):
        events.append(("read", os.path.abspath(os.fsdecode(args[0]))))
    elif event == "os.rename":
        events.append(("write", os.path.abspath(os.fsdecode(args[1]))))


def main() -> None:
    module, output = sys.argv[1], sys.argv[2]
    sys.argv = [module]
    sys.path[0] = os.getcwd()  # as `python -m` does: the project, not this script's folder
    sys.addaudithook(record)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        with open(output, "w") as handle:
            json.dump(events, handle)


if __name__ == "__main__":
    main()
