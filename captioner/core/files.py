"""Atomic writes: every output goes to a temporary path and is moved into place only when complete."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


def remove_leftovers(folder: Path, prefix: str) -> None:
    """Deletes the entries of `folder` whose names start with `prefix`: what killed runs left."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(prefix):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it replaces `path` (file or folder).

    The temporary lies in a hidden folder `.NAME.tmp-*` that no stage reads. A run killed before
    the replace leaves `path` as it was (a killed folder swap may leave it absent); its leftovers
    are removed the next time `path` is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    remove_leftovers(path.parent, prefix)
    temporary = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent)) / path.name
    try:
        yield temporary
        if temporary.is_file():
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f"{prefix}old")
            path.rename(old)
            temporary.rename(path)
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary.parent, ignore_errors=True)


def write_json(path: Path | str, data: Any) -> None:
    """Writes `data` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path | str, records: Iterable[dict[str, Any]]) -> None:
    """Writes one JSON object per line, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Reads a file written by `write_jsonl`."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_json(path: Path | str) -> Any:
    """Reads a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_npy(path: Path | str, array: np.ndarray) -> None:
    """Saves a NumPy array (never pickled), atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, array, allow_pickle=False)


def read_npy(path: Path | str) -> np.ndarray:
    """Loads an array saved by `write_npy`, refusing pickled objects."""
    return np.load(path, allow_pickle=False)
