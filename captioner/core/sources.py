"""Sources as params give them: an `https://`, `http://` or `file://` URL or a local path (relative to
the working directory), what file name each ends in, and the sha256 that identifies a file's content."""

from __future__ import annotations

import hashlib
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from captioner.core.errors import PipelineError

MB = 1024 * 1024
# How much of a file is read or written at a time when streaming it.
CHUNK_BYTES = 64 * 1024


def source_name(source: str) -> str:
    """The file name a source ends in (its URL path's or its path's last part), or `download` when
    that is no file name (empty, or `..`)."""
    name = PurePosixPath(urllib.parse.urlparse(source).path).name
    return name if name not in ("", "..") else "download"


def undecodable_name(name: str) -> str | None:
    """For a name read from the file system or an archive whose bytes are not UTF-8 (Python holds
    them as lone surrogates, which TensorFlow and the terminal cannot take), the name with those
    bytes escaped (`\\xff`), to show; None for a UTF-8 name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return None


def local_path(source: str) -> Path | None:
    """The local file or folder a source names (`file://` URL or plain path), or None for http(s)."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise PipelineError(f"{source}: file:// URLs must name a local file (no host)")
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme:
        raise PipelineError(f"{source}: unsupported URL scheme '{parsed.scheme}' "
                            "(use https://, http://, file:// or a local path)")
    return Path(source)


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(source: str, expected_sha256: str, actual: str) -> None:
    """Refuses a file whose sha256 is not the expected one (an empty expectation accepts any)."""
    if expected_sha256 and actual != expected_sha256:
        raise PipelineError(f"{source}: sha256 mismatch: expected {expected_sha256}, got {actual}")
