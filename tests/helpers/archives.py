"""Archives and folders for the data-stage tests: zips and tars from a dict of members, and a
folder's files or full state (to check that nothing changed it)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    """Writes a deflated zip holding `members` (name -> content)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    """Writes a tar (mode "w", "w:gz", ...) holding regular files `members` (name -> content)."""
    with tarfile.open(path, mode) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def files_under(folder: Path) -> dict[str, bytes]:
    """Each file below `folder` (relative POSIX path) and its content."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fingerprint(folder: Path) -> dict[str, tuple]:
    """Each file's content and each entry's mode, modification time, inode and link count."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None,
                                               p.stat().st_mode, p.stat().st_mtime_ns,
                                               p.stat().st_ino, p.stat().st_nlink)
            for p in sorted(folder.rglob("*"))}


def patched_zip(path: Path, members: dict[str, bytes], offset: int, value: bytes) -> Path:
    """A zip of `members` whose first central directory entry has `value` at `offset` (8: the
    flags, 10: the compression method)."""
    data = bytearray(make_zip(path, members).read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + offset:central + offset + len(value)] = value
    path.write_bytes(bytes(data))
    return path
