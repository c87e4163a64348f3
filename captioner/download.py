"""Fetches the Flickr8k archives, verifies them and unpacks them safely into a flat layout.

A source is an `https://`, `http://` or `file://` URL or a local path (relative to the working
directory). Local archives are read in place; remote ones are streamed to a scratch file with
retries that resume through HTTP Range. Extraction refuses unsafe members (absolute paths, `..`,
links), skips `__MACOSX/`, caps the unpacked size and flattens the chosen files into one folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import stat
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import requests
from tqdm import tqdm

from captioner.errors import PipelineError
from captioner.files import atomic_path, remove_leftovers
from captioner.params import DownloadParams

MB = 1024 * 1024
CHUNK_BYTES = 64 * 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg")
TEXT_SUFFIXES = (".txt",)
CAPTION_FILE = "Flickr8k.token.txt"
ZIP_LOCAL_HEADER = b"PK\x03\x04"
SCRATCH_PREFIX = ".download."
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
CONNECTION_PREFIX = re.compile(r"^\w+\(host=[^)]*\): ")


@dataclasses.dataclass(frozen=True)
class HttpPolicy:
    """How hard to try a remote download: attempts, backoff before retry n (backoff_s * 2**(n-1)),
    and connect/read timeouts in seconds."""

    attempts: int = 5
    backoff_s: float = 1.0
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0


@dataclasses.dataclass(frozen=True)
class Archive:
    """An archive ready to read: where it came from, where it lies now, its size and sha256."""

    source: str
    path: Path
    size_bytes: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Unpacked:
    """What `extract_flat` wrote: the file names and their total size in bytes."""

    names: list[str]
    unpacked_bytes: int


class _TransientError(Exception):
    """A failed attempt worth retrying (server error, short body, refused resume)."""


def local_path(source: str) -> Path | None:
    """The local file a source names (`file://` URL or plain path), or None for http(s)."""
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


@contextlib.contextmanager
def fetch(
    source: str,
    expected_sha256: str,
    scratch_dir: Path,
    *,
    setting: str,
    policy: HttpPolicy = HttpPolicy(),
) -> Iterator[Archive]:
    """Yields the archive at `source`, verified against `expected_sha256` when it is not empty.

    Local files are read in place. Remote files are downloaded into a temporary folder under
    `scratch_dir`, removed on leaving the block or when the download fails or does not verify
    (and, when a killed run left it, at the next fetch).
    `setting` is the params key holding `source`, named in hints when the server is unreachable.
    """
    path = local_path(source)
    if path is not None:
        if not path.is_file():
            raise PipelineError(f"{source}: no such file")
        yield _verified(source, path, expected_sha256)
        return
    remove_leftovers(scratch_dir, SCRATCH_PREFIX)
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=scratch_dir) as folder:
        target = Path(folder) / _file_name(source)
        download_file(source, target, setting=setting, policy=policy)
        yield _verified(source, target, expected_sha256)


def _file_name(url: str) -> str:
    return PurePosixPath(urllib.parse.urlparse(url).path).name or "archive.zip"


def _verified(source: str, path: Path, expected_sha256: str) -> Archive:
    actual = sha256_of(path)
    if expected_sha256 and actual != expected_sha256:
        raise PipelineError(
            f"{source}: sha256 mismatch: expected {expected_sha256}, got {actual}"
        )
    return Archive(source, path, path.stat().st_size, actual)


def download_file(
    url: str, target: Path, *, setting: str, policy: HttpPolicy = HttpPolicy()
) -> None:
    """Streams `url` into `target` with a progress bar, retrying and resuming a partial file."""
    reached_server = False
    failure = ""
    with requests.Session() as session:
        for attempt in range(policy.attempts):
            if attempt:
                time.sleep(policy.backoff_s * 2 ** (attempt - 1))
            offset = target.stat().st_size if target.exists() else 0
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            timeout = (policy.connect_timeout_s, policy.read_timeout_s)
            try:
                with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
                    reached_server = True
                    _save_response(url, response, target, offset)
                return
            except _TransientError as error:
                failure = str(error)
            except requests.RequestException as error:
                failure = _reason(error)
            if attempt + 1 < policy.attempts:
                print(f"{url}: {failure}; retrying ({attempt + 2}/{policy.attempts})",
                      file=sys.stderr)
    if not reached_server:
        raise PipelineError(
            f"{url}: unreachable ({failure}); to use a local copy run "
            f"`dvc exp run -S {setting}=/path/to/{_file_name(url)}` or set {setting} in params.yaml"
        )
    raise PipelineError(f"{url}: download failed after {policy.attempts} attempts: {failure}")


def _save_response(url: str, response: requests.Response, target: Path, offset: int) -> None:
    code = response.status_code
    if code == 416 and offset:
        target.unlink()
        raise _TransientError("server refused to resume (HTTP 416); restarting")
    if code >= 500 or code == 429:
        raise _TransientError(f"HTTP {code} {response.reason}")
    if code not in (200, 206):
        raise PipelineError(f"{url}: HTTP {code} {response.reason}")
    first, total = _body_span(response)
    resuming = code == 206
    if resuming and first != offset:
        target.unlink(missing_ok=True)
        raise _TransientError(f"server sent bytes from {first}, asked for {offset}; restarting")
    start = offset if resuming else 0
    with open(target, "ab" if resuming else "wb") as handle, tqdm(
        total=total, initial=start, desc=target.name, unit="B", unit_scale=True,
        unit_divisor=1024,
    ) as progress:
        for chunk in response.iter_content(CHUNK_BYTES):
            handle.write(chunk)
            progress.update(len(chunk))
    size = target.stat().st_size
    if total is not None and size != total:
        raise _TransientError(f"got {size} of {total} bytes")


def _body_span(response: requests.Response) -> tuple[int, int | None]:
    """The offset of the first byte in the body and the full file size, when the server says."""
    if response.status_code == 206:
        match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if not match:
            raise _TransientError("partial response without a valid Content-Range")
        return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length", "")
    return 0, int(length) if length.isdigit() else None


def _reason(error: requests.RequestException) -> str:
    """The innermost cause of a requests error, without urllib3's connection prefix."""
    cause: BaseException = error
    while cause.args and isinstance(cause.args[0], BaseException):
        cause = cause.args[0]
    cause = getattr(cause, "reason", None) or cause
    message = cause.args[0] if cause.args and isinstance(cause.args[0], str) else str(cause)
    return CONNECTION_PREFIX.sub("", message)


def check_member(source: str, info: zipfile.ZipInfo) -> None:
    """Refuses a member with an absolute path, a `..` component or a link."""
    name = info.filename
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise PipelineError(f"{source}: member '{name}' has an absolute path")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise PipelineError(f"{source}: member '{name}' escapes the archive ('..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise PipelineError(f"{source}: member '{name}' is a symbolic link")


def _chosen_members(
    source: str, archive: zipfile.ZipFile, suffixes: tuple[str, ...]
) -> dict[str, zipfile.ZipInfo]:
    """Safe regular members with one of `suffixes`, outside `__MACOSX/`, keyed by base name."""
    chosen: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        check_member(source, info)
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.is_dir() or "__MACOSX" in parts or not parts[-1].lower().endswith(suffixes):
            continue
        if parts[-1] in chosen:
            raise PipelineError(f"{source}: members '{chosen[parts[-1]].filename}' and "
                                f"'{info.filename}' would both unpack to '{parts[-1]}'")
        chosen[parts[-1]] = info
    return chosen


def _open_zip(archive: Archive) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive.path)
    except zipfile.BadZipFile:
        with open(archive.path, "rb") as handle:
            looks_like_zip = handle.read(len(ZIP_LOCAL_HEADER)) == ZIP_LOCAL_HEADER
    problem = "truncated or damaged zip archive" if looks_like_zip else "not a zip archive"
    raise PipelineError(f"{archive.source}: {problem}")


def extract_flat(
    archive: Archive, destination: Path, suffixes: tuple[str, ...], max_bytes: int
) -> Unpacked:
    """Unpacks the members ending in `suffixes` (any folder) straight into `destination`.

    Unpacking stops with an error when the declared or the actually written size passes
    `max_bytes`, so a zip bomb is refused before and while it is written.
    """
    with _open_zip(archive) as zipped:
        members = _chosen_members(archive.source, zipped, suffixes)
        declared = sum(info.file_size for info in members.values())
        if declared > max_bytes:
            raise PipelineError(f"{archive.source}: declares {declared / MB:.1f} MB unpacked, "
                                f"over the {max_bytes / MB:.1f} MB left under "
                                "download.max_unpacked_mb (zip bomb?)")
        destination.mkdir(parents=True, exist_ok=True)
        written = 0
        for name, info in sorted(members.items()):
            try:
                written = _copy_member(archive, zipped, info, destination / name, written,
                                       max_bytes)
            except (zipfile.BadZipFile, EOFError, zlib.error) as error:
                raise PipelineError(
                    f"{archive.source}: damaged member '{info.filename}': {error}"
                ) from None
    return Unpacked(sorted(members), written)


def _copy_member(
    archive: Archive, zipped: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path,
    written: int, max_bytes: int,
) -> int:
    with zipped.open(info) as member, open(target, "wb") as handle:
        while chunk := member.read(CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise PipelineError(f"{archive.source}: unpacks to more than "
                                    f"{max_bytes / MB:.1f} MB (download.max_unpacked_mb)")
            handle.write(chunk)
    return written


def _archive_metrics(archive: Archive) -> dict[str, Any]:
    return {"source": archive.source, "bytes": archive.size_bytes, "sha256": archive.sha256}


def download_dataset(
    settings: DownloadParams, raw_dir: Path, *, policy: HttpPolicy = HttpPolicy()
) -> dict[str, Any]:
    """Fills `raw_dir/images` (flat JPEGs) and `raw_dir/text` (.txt files); returns metrics.

    Both folders are replaced only once everything is fetched and unpacked, so a failed or
    killed run leaves the previous outputs (or none), never a half-written one.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    budget = settings.max_unpacked_mb * MB
    with atomic_path(raw_dir / "text") as text_dir, atomic_path(raw_dir / "images") as image_dir:
        with fetch(settings.text_url, settings.text_sha256, raw_dir,
                   setting="download.text_url", policy=policy) as text_archive:
            text = extract_flat(text_archive, text_dir, TEXT_SUFFIXES, budget)
        if CAPTION_FILE not in text.names:
            found = ", ".join(text.names) or "no .txt files"
            raise PipelineError(f"{settings.text_url}: caption file {CAPTION_FILE} not found "
                                f"in the archive (found: {found})")
        with fetch(settings.images_url, settings.images_sha256, raw_dir,
                   setting="download.images_url", policy=policy) as image_archive:
            images = extract_flat(image_archive, image_dir, IMAGE_SUFFIXES,
                                  budget - text.unpacked_bytes)
        if not images.names:
            raise PipelineError(f"{settings.images_url}: no JPEG images in the archive")
    return {
        "images": len(images.names),
        "text_files": text.names,
        "unpacked_bytes": text.unpacked_bytes + images.unpacked_bytes,
        "archives": {"text": _archive_metrics(text_archive),
                     "images": _archive_metrics(image_archive)},
    }
