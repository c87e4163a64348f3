"""Reading zip and tar archives (plain, gzip, bzip2, xz) member by member, within bounds.

Every member is checked while the archive is listed, before anything is read: no absolute path, no
`..`, no name part over 255 bytes, no links, devices or pipes, no encrypted zip member or unknown
compression. Tar headers are read one at a time: a negative size, or a long name or pax record
over MAX_TAR_HEADER_BYTES, is refused before tarfile reads it (CPython 3.11's tarfile loops forever
on a negative size, CVE-2025-8194, and reads a long name whole into memory), and listing stops once
the members' declared sizes pass the caller's cap, since passing a member of a compressed tar means
decompressing it. tarfile and zipfile do the reading; what is written here is only these checks.
"""

from __future__ import annotations

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
from captioner.core.sources import CHUNK_BYTES, MB, source_name, undecodable_name

ZIP_MAGIC = b"PK\x03\x04"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
SPECIAL_ZIP_TYPES = {stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK}
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
# What a file system takes as one name, in bytes.
MAX_NAME_BYTES = 255
# A tar header's own data (a GNU long name or link, a pax record) is read whole into memory.
MAX_TAR_HEADER_BYTES = 64 * 1024
TAR_COMPRESSIONS = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
TAR_EXTENDED_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                        tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


@dataclasses.dataclass(frozen=True)
class Member:
    """A regular file inside an archive: its '/'-separated path, declared size and entry."""

    name: str
    size: int
    entry: zipfile.ZipInfo | tarfile.TarInfo


def archive_format(fetched: Fetched) -> str | None:
    """'zip' or 'tar' by the source's name or the file's content; None for neither."""
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
    except TarReader.errors:
        return True  # a compressed stream cut short: opening it as a tar names the damage


def open_archive(archive: Fetched, max_bytes: int) -> ZipReader | TarReader:
    """A reader of the archive's members; a tar's listing stops past `max_bytes` declared (the
    budget left under download.max_unpacked_mb)."""
    kind = archive_format(archive)
    if kind is None:
        raise PipelineError(f"{archive.source}: not a zip or tar archive")
    return ZipReader(archive) if kind == "zip" else TarReader(archive, max_bytes)


def check_member_name(source: str, name: str) -> None:
    """Refuses a member path that is absolute, climbs out with `..` or has a name part no file
    system takes."""
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise PipelineError(f"{source}: member '{name}' has an absolute path")
    shown = undecodable_name(name)
    if shown is not None:
        raise PipelineError(f"{source}: member '{shown}' has a name that is not UTF-8")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise PipelineError(f"{source}: member '{name}' escapes the archive ('..')")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in parts):
        raise PipelineError(f"{source}: member '{name[:80]}...' has a name over {MAX_NAME_BYTES} bytes")


def refuse_kind(source: str, name: str, kind: str) -> None:
    raise PipelineError(f"{source}: member '{name}' is a {kind}")


class ZipReader:
    errors = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)

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
                refuse_kind(self.source, info.filename, "symbolic link")
            if kind in SPECIAL_ZIP_TYPES:
                refuse_kind(self.source, info.filename, "device, pipe or socket")
            if info.flag_bits & 0x1:
                raise PipelineError(f"{self.source}: member '{info.filename}' is encrypted")
            if info.compress_type not in ZIP_METHODS:
                raise PipelineError(f"{self.source}: member '{info.filename}' uses compression "
                                    f"method {info.compress_type}, which Python's zipfile cannot read")
            if not info.is_dir():
                found.append(Member(info.filename.replace("\\", "/"), info.file_size, info))
        return found

    def read(self, member: Member) -> Iterator[bytes]:
        return _chunks(self.source, member, lambda: self.zipped.open(member.entry), self.errors)

    def close(self) -> None:
        self.zipped.close()


class _RefusedHeader(tarfile.SubsequentHeaderError):
    """A tar header refused by _BoundedTarInfo (tarfile rethrows it as a ReadError)."""


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header, refused before tarfile acts on it when its size is negative, or when it is a
    long name or pax record over MAX_TAR_HEADER_BYTES (TarInfo.frombuf is tarfile's hook for this)."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> _BoundedTarInfo:
        info = super().frombuf(buf, encoding, errors)
        if info.size < 0:
            raise _RefusedHeader(f"member '{info.name}' declares a negative size")
        if info.type in TAR_EXTENDED_HEADERS and info.size > MAX_TAR_HEADER_BYTES:
            raise _RefusedHeader(
                f"an extended header of {info.size} bytes (a name or record over {MAX_TAR_HEADER_BYTES})")
        return info


class TarReader:
    errors = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)

    def __init__(self, archive: Fetched, max_bytes: int) -> None:
        self.source, self.max_bytes = archive.source, max_bytes
        with open(archive.path, "rb") as handle:
            magic = handle.read(6)
        compression = next((kind for prefix, kind in TAR_COMPRESSIONS.items()
                            if magic.startswith(prefix)), "")
        try:
            # The compression named, not "r:*", which would hide a refused header among its tries.
            self.tar = tarfile.open(archive.path, f"r:{compression}", tarinfo=_BoundedTarInfo)
        except tarfile.TarError as error:
            if isinstance(error.__context__, _RefusedHeader):
                raise PipelineError(f"{archive.source}: truncated or damaged tar archive: {error}") from None
            raise PipelineError(f"{archive.source}: not a zip or tar archive") from None
        except self.errors as error:
            raise PipelineError(f"{archive.source}: truncated or damaged tar archive: {error}") from None

    def members(self) -> list[Member]:
        """The regular files, listed header by header: each one must move forward (a pax record can
        still set a negative size), and all members' declared sizes together stay under the cap."""
        found, declared = [], 0
        try:
            while (info := self.tar.next()) is not None:
                if info.size < 0 or self.tar.offset <= info.offset:
                    raise PipelineError(f"{self.source}: member '{info.name}' declares a negative size")
                declared += info.size
                if declared > self.max_bytes:
                    raise PipelineError(f"{self.source}: its members declare more than "
                                        f"{self.max_bytes / MB:.1f} MB, over download.max_unpacked_mb")
                found.extend(self._checked(info))
        except self.errors as error:
            raise PipelineError(f"{self.source}: truncated or damaged tar archive: {error}") from None
        return found

    def _checked(self, info: tarfile.TarInfo) -> list[Member]:
        check_member_name(self.source, info.name)
        if info.issym() or info.islnk():
            refuse_kind(self.source, info.name, "symbolic link" if info.issym() else "hard link")
        if info.ischr() or info.isblk() or info.isfifo():
            refuse_kind(self.source, info.name, "device or pipe")
        return [Member(info.name, info.size, info)] if info.isfile() else []

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
