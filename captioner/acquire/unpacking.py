"""Safe extraction of zip and tar archives (plain, gzip, bzip2, xz) into the raw folders.

Every member is checked before anything is written: no absolute path, no `..`, no links, devices or
pipes. `__MACOSX/` and hidden files and folders are skipped. Images (`captioner.core.image_files`) keep
their path inside the archive, less the one top folder all of them share; text files (.txt, .token,
.json, .csv) are flattened by base name, refusing two with one name. The declared size is checked
against the cap before writing and the written size while writing, so an archive bomb is refused
either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from captioner.acquire.fetching import Fetched
from captioner.core.errors import PipelineError
from captioner.core.image_files import is_image_name
from captioner.core.sources import CHUNK_BYTES, MB, source_name

TEXT_SUFFIXES = (".txt", ".token", ".json", ".csv")
ZIP_MAGIC = b"PK\x03\x04"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
SPECIAL_ZIP_TYPES = {stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK}


@dataclasses.dataclass(frozen=True)
class Member:
    """A regular file inside an archive: its '/'-separated path, declared size and entry."""

    name: str
    size: int
    entry: zipfile.ZipInfo | tarfile.TarInfo


@dataclasses.dataclass(frozen=True)
class Unpacked:
    """What was written: file paths relative to the destination (sorted) and their total bytes."""

    names: list[str]
    unpacked_bytes: int


def is_archive(fetched: Fetched) -> bool:
    """Whether a fetched file is a zip or tar archive, by its source's name or its content."""
    return _archive_format(fetched) is not None


def unpack_images(archive: Fetched, destination: Path, max_bytes: int) -> Unpacked:
    """Unpacks the archive's images under `destination`, keeping their paths below the common top."""
    return _unpack(archive, destination, max_bytes, is_image_name, _image_targets)


def unpack_text(archive: Fetched, destination: Path, max_bytes: int) -> Unpacked:
    """Unpacks the archive's .txt, .token, .json and .csv files straight into `destination`."""
    return _unpack(archive, destination, max_bytes, is_text_name, _flat_targets)


def is_text_name(name: str) -> bool:
    """Whether a file name (or member path) names a caption or split file by its suffix."""
    base = PurePosixPath(name.replace("\\", "/")).name
    return base.lower().endswith(TEXT_SUFFIXES) and not base.startswith(".")


def _archive_format(fetched: Fetched) -> str | None:
    name = source_name(fetched.source).lower()
    with open(fetched.path, "rb") as handle:
        magic = handle.read(len(ZIP_MAGIC))
    if name.endswith(".zip") or magic == ZIP_MAGIC or zipfile.is_zipfile(fetched.path):
        return "zip"
    if name.endswith(TAR_SUFFIXES) or _looks_like_tar(fetched.path):
        return "tar"
    return None


def _looks_like_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except _TarReader.errors:
        return True  # a compressed stream cut short: opening it as a tar names the damage


def _unpack(
    archive: Fetched, destination: Path, max_bytes: int, wanted: Callable[[str], bool],
    targets: Callable[[str, list[Member]], dict[str, Member]],
) -> Unpacked:
    with contextlib.closing(_reader(archive)) as reader:
        chosen = targets(archive.source, [m for m in reader.members() if _is_wanted(m, wanted)])
        declared = sum(member.size for member in chosen.values())
        if declared > max_bytes:
            raise PipelineError(f"{archive.source}: declares {declared / MB:.1f} MB unpacked, "
                                f"over the {max_bytes / MB:.1f} MB left under "
                                "download.max_unpacked_mb (archive bomb?)")
        destination.mkdir(parents=True, exist_ok=True)
        written = 0
        for target, member in chosen.items():  # in archive order: no seeking back in a stream
            path = destination / target
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                for chunk in reader.read(member):
                    written += len(chunk)
                    if written > max_bytes:
                        raise PipelineError(f"{archive.source}: unpacks to more than "
                                            f"{max_bytes / MB:.1f} MB (download.max_unpacked_mb)")
                    handle.write(chunk)
    return Unpacked(sorted(chosen), written)


def _is_wanted(member: Member, wanted: Callable[[str], bool]) -> bool:
    parts = PurePosixPath(member.name).parts
    return wanted(member.name) and not any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _image_targets(source: str, members: list[Member]) -> dict[str, Member]:
    """Image members by id: their path less the single top folder that all of them share."""
    paths = [PurePosixPath(member.name).parts for member in members]
    shared_top = len({parts[0] for parts in paths}) == 1 and all(len(p) > 1 for p in paths)
    return _unique(source, [("/".join(parts[shared_top:]), member)
                            for parts, member in zip(paths, members, strict=True)])


def _flat_targets(source: str, members: list[Member]) -> dict[str, Member]:
    return _unique(source, [(PurePosixPath(member.name).name, member) for member in members])


def _unique(source: str, pairs: list[tuple[str, Member]]) -> dict[str, Member]:
    chosen: dict[str, Member] = {}
    for target, member in pairs:
        if target in chosen:
            raise PipelineError(f"{source}: members '{chosen[target].name}' and '{member.name}' "
                                f"would both unpack to '{target}'")
        chosen[target] = member
    return chosen


def check_member_name(source: str, name: str) -> None:
    """Refuses a member path that is absolute or climbs out with `..`."""
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise PipelineError(f"{source}: member '{name}' has an absolute path")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise PipelineError(f"{source}: member '{name}' escapes the archive ('..')")


def _refuse_kind(source: str, name: str, kind: str) -> None:
    raise PipelineError(f"{source}: member '{name}' is a {kind}")


class _ZipReader:
    errors = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError)

    def __init__(self, archive: Fetched) -> None:
        self.source = archive.source
        try:
            self.zipped = zipfile.ZipFile(archive.path)
        except zipfile.BadZipFile:
            with open(archive.path, "rb") as handle:
                looks_like_zip = handle.read(len(ZIP_MAGIC)) == ZIP_MAGIC
            problem = "truncated or damaged zip archive" if looks_like_zip else "not a zip archive"
            raise PipelineError(f"{archive.source}: {problem}") from None

    def members(self) -> list[Member]:
        found = []
        for info in self.zipped.infolist():
            check_member_name(self.source, info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                _refuse_kind(self.source, info.filename, "symbolic link")
            if kind in SPECIAL_ZIP_TYPES:
                _refuse_kind(self.source, info.filename, "device, pipe or socket")
            if not info.is_dir():
                found.append(Member(info.filename.replace("\\", "/"), info.file_size, info))
        return found

    def read(self, member: Member) -> Iterator[bytes]:
        return _chunks(self.source, member, lambda: self.zipped.open(member.entry), self.errors)

    def close(self) -> None:
        self.zipped.close()


class _TarReader:
    errors = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)

    def __init__(self, archive: Fetched) -> None:
        self.source = archive.source
        try:
            self.tar = tarfile.open(archive.path, "r:*")
        except tarfile.TarError:
            raise PipelineError(f"{archive.source}: not a zip or tar archive") from None
        except self.errors as error:
            raise PipelineError(f"{archive.source}: truncated or damaged tar archive: {error}") from None

    def members(self) -> list[Member]:
        try:
            entries = self.tar.getmembers()
        except self.errors as error:
            raise PipelineError(f"{self.source}: truncated or damaged tar archive: {error}") from None
        found = []
        for info in entries:
            check_member_name(self.source, info.name)
            if info.issym() or info.islnk():
                _refuse_kind(self.source, info.name, "symbolic link" if info.issym() else "hard link")
            if info.ischr() or info.isblk() or info.isfifo():
                _refuse_kind(self.source, info.name, "device or pipe")
            if info.isfile():
                found.append(Member(info.name, info.size, info))
        return found

    def read(self, member: Member) -> Iterator[bytes]:
        return _chunks(self.source, member, lambda: self.tar.extractfile(member.entry), self.errors)

    def close(self) -> None:
        self.tar.close()


def _chunks(
    source: str, member: Member, opener: Callable[[], IO[bytes] | None],
    errors: tuple[type[BaseException], ...],
) -> Iterator[bytes]:
    """The member's bytes; a read error names the member (errors of the consumer pass through)."""
    try:
        with opener() as stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
    except errors as error:
        raise PipelineError(f"{source}: damaged member '{member.name}': {error}") from None


def _reader(archive: Fetched) -> _ZipReader | _TarReader:
    kind = _archive_format(archive)
    if kind is None:
        raise PipelineError(f"{archive.source}: not a zip or tar archive")
    return _ZipReader(archive) if kind == "zip" else _TarReader(archive)
