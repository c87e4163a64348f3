"""Archives and folders for the data-stage tests: zips and tars from a dict of members or a folder,
crafted ones (a patched zip header, a raw tar header, a tar with an unsafe member), and a folder's
files, written or read, or its full state (to check that nothing changed it)."""

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


def make_folder_tar(path: Path, folder: Path, top: str) -> Path:
    """Writes a gzipped tar of `folder`'s files, all under one top folder named `top`."""
    with tarfile.open(path, "w:gz") as archive:
        archive.add(folder, arcname=top)
    return path


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    """Writes each file (relative POSIX path -> content) below `folder`: `files_under` in reverse."""
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


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


def tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    """A ustar header for `name` declaring `size` (negative sizes in base-256, as GNU tar writes
    large ones), its checksum right."""
    info = tarfile.TarInfo(name)
    info.type = kind
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    field = b"\xff" + (256**11 + size).to_bytes(11, "big") if size < 0 else b"%011o\0" % size
    header[124:136] = field
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def make_unsafe_tar(path: Path, kind: str) -> Path:
    """Writes a tar holding one good image and one unsafe member of `kind`: "absolute" (its path),
    "parent" (a path out through `..`), "symlink" or "hardlink" (to /etc/passwd), "device", "fifo"."""
    info = tarfile.TarInfo({"absolute": "/etc/evil.jpg", "parent": "top/../../evil.jpg"}.get(kind,
                                                                                          "top/x.jpg"))
    info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "device": tarfile.CHRTYPE,
                 "fifo": tarfile.FIFOTYPE}.get(kind, tarfile.REGTYPE)
    info.linkname = "/etc/passwd" if kind in ("symlink", "hardlink") else ""
    with tarfile.open(path, "w") as archive:
        good = tarfile.TarInfo("top/ok.jpg")
        good.size = 2
        archive.addfile(good, io.BytesIO(b"ok"))
        archive.addfile(info)
    return path
