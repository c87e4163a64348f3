"""Fetches a source to a local file: a local path in place, an http(s) URL with retries and resume.

A source is an `https://`, `http://` or `file://` URL or a local path (relative to the working
directory). urllib3 retries failed connections, reads and answers 429/500/502/503/504 with
exponential backoff. A body cut short is resumed here: each URL downloads into a file of the
partial folder named from the URL's sha256 and base name, beside a sidecar `.json` with the URL and
the server's ETag and Last-Modified, so a later request, in this process or the next one, asks for
the rest with `Range` and `If-Range` (a file changed on the server comes whole again). A finished
download is checked against the size the server announced and, when given, its sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from captioner.core.errors import PipelineError
from captioner.core.files import read_json, write_json
from captioner.core.sources import CHUNK_BYTES, MB, check_sha256, local_path, sha256_of, source_name

RETRIED_STATUSES = (429, 500, 502, 503, 504)
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")
CONNECTION_PREFIX = re.compile(r"^\w+\(host=[^)]*\): ")


@dataclasses.dataclass(frozen=True)
class HttpPolicy:
    """How hard to try: requests per download (and resumes of a cut body), urllib3's backoff factor
    (retry n waits backoff_s * 2**(n-1), the first one none) and connect/read timeouts in seconds."""

    attempts: int = 5
    backoff_s: float = 1.0
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0


DEFAULT_POLICY = HttpPolicy()


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A source's file ready to read: the source as given, where the file lies, its size and sha256."""

    source: str
    path: Path
    size_bytes: int
    sha256: str


class _Interrupted(Exception):
    """The body stopped early or the server's answer means starting over: worth another request."""


@dataclasses.dataclass(frozen=True)
class Cap:
    """The most bytes a download may bring, and what sets it (named when a download passes it)."""

    max_bytes: int
    name: str


def fetch(
    source: str, expected_sha256: str, partial_dir: Path, *, setting: str, cap: Cap,
    policy: HttpPolicy = DEFAULT_POLICY,
) -> Fetched:
    """The file at `source`, verified against `expected_sha256` when that is not empty.

    A local file is read in place. A remote one is downloaded (or finished) into `partial_dir` and
    left there for the caller to remove after use, unless it fails verification or passes `cap`
    (then it is removed). `setting` is the params key holding `source`, named in the hint given when
    the server is unreachable. A server that stops sending stops the download after
    `policy.read_timeout_s` (once per attempt).
    """
    path = local_path(source)
    if path is not None:
        if path.is_dir():
            raise PipelineError(f"{source}: is a folder, {setting} takes a file here")
        if not path.is_file():
            raise PipelineError(f"{source}: no such file")
        return _verified(source, path, expected_sha256, None)
    partial = _Partial.for_url(source, partial_dir)
    _download(source, partial, setting=setting, cap=cap, policy=policy)
    try:
        return _verified(source, partial.data, expected_sha256, partial.record().get("size"))
    except PipelineError:
        partial.discard()
        raise


def _verified(source: str, path: Path, expected_sha256: str, announced: int | None) -> Fetched:
    size = path.stat().st_size
    if announced is not None and size != announced:
        raise PipelineError(f"{source}: got {size} bytes, the server announced {announced}")
    actual = sha256_of(path)
    check_sha256(source, expected_sha256, actual)
    return Fetched(source, path, size, actual)


@dataclasses.dataclass(frozen=True)
class _Partial:
    """A URL's download in progress: its data file and the sidecar describing what it holds."""

    url: str
    data: Path
    sidecar: Path

    @classmethod
    def for_url(cls, url: str, folder: Path) -> _Partial:
        stem = f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{source_name(url)}"
        return cls(url, folder / stem, folder / f"{stem}.json")

    def record(self) -> dict[str, Any]:
        return read_json(self.sidecar) if self.sidecar.is_file() else {}

    def resume_point(self) -> tuple[int, str | None]:
        """The offset to resume from and the If-Range validator; (0, None) to start afresh."""
        record = self.record()
        etag = record.get("etag") or ""
        validator = etag if etag and not etag.startswith("W/") else record.get("last_modified")
        if record.get("url") != self.url or not validator or not self.data.is_file():
            return 0, None
        return self.data.stat().st_size, validator

    def restart(self, response: requests.Response, size: int | None) -> None:
        """Empties the data file, then records the new response's validators and size."""
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self.data.write_bytes(b"")
        write_json(self.sidecar, {"url": self.url, "etag": response.headers.get("ETag"),
                                  "last_modified": response.headers.get("Last-Modified"),
                                  "size": size})

    def discard(self) -> None:
        self.data.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)


def _session(policy: HttpPolicy) -> requests.Session:
    retries = policy.attempts - 1
    retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                  backoff_factor=policy.backoff_s, status_forcelist=RETRIED_STATUSES,
                  allowed_methods=["GET"], raise_on_status=False)
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(max_retries=retry))
    return session


def _download(url: str, partial: _Partial, *, setting: str, cap: Cap, policy: HttpPolicy) -> None:
    answered = False
    failure = ""
    timeout = (policy.connect_timeout_s, policy.read_timeout_s)
    with _session(policy) as session:
        for attempt in range(policy.attempts):
            offset, validator = partial.resume_point()
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers.update({"Range": f"bytes={offset}-", "If-Range": validator})
            try:
                response = session.get(url, headers=headers, stream=True, timeout=timeout)
            except requests.RequestException as error:
                if answered:
                    raise PipelineError(f"{url}: download failed: {_reason(error)}") from None
                raise PipelineError(
                    f"{url}: unreachable ({_reason(error)}); to use a local copy run `dvc exp run "
                    f"-S {setting}=/path/to/{source_name(url)}` or set {setting} in params.yaml"
                ) from None
            answered = True
            with response:
                try:
                    _save(url, response, partial, offset, policy.attempts, cap)
                    return
                except _Interrupted as error:
                    failure = str(error)
            if attempt + 1 < policy.attempts:
                print(f"{url}: {failure}; trying again ({attempt + 2}/{policy.attempts})",
                      file=sys.stderr)
    raise PipelineError(f"{url}: download failed after {policy.attempts} attempts: {failure}")


def _save(url: str, response: requests.Response, partial: _Partial, offset: int,
          attempts: int, cap: Cap) -> None:
    code = response.status_code
    if code == 416:
        match = UNSATISFIED_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if offset and match and int(match.group(1)) == offset:
            return  # the partial file already holds the whole, unchanged file
        partial.discard()
        raise _Interrupted("server refused to resume (HTTP 416); restarting")
    if code in RETRIED_STATUSES:
        raise PipelineError(f"{url}: HTTP {code} {response.reason} (after {attempts} attempts)")
    if code not in (200, 206):
        raise PipelineError(f"{url}: HTTP {code} {response.reason}")
    first, total = _body_span(response)
    if code == 206 and first != offset:
        partial.discard()
        raise _Interrupted(f"server sent bytes from {first}, asked for {offset}; restarting")
    over_cap = PipelineError(f"{url}: more than {cap.max_bytes / MB:.1f} MB, the cap set by {cap.name}")
    if total is not None and total > cap.max_bytes:
        partial.discard()
        raise over_cap
    if code == 200 or not offset:
        partial.restart(response, total)
    with open(partial.data, "ab") as handle, tqdm(
        total=total, initial=first, desc=source_name(url), unit="B", unit_scale=True,
        unit_divisor=1024,
    ) as progress:
        size = first
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                size += len(chunk)
                if size > cap.max_bytes:
                    break
                handle.write(chunk)
                progress.update(len(chunk))
        except requests.RequestException as error:
            raise _Interrupted(_reason(error)) from None
    if size > cap.max_bytes:
        partial.discard()
        raise over_cap
    size = partial.data.stat().st_size
    if total is not None and size != total:
        raise _Interrupted(f"got {size} of {total} bytes")


def _body_span(response: requests.Response) -> tuple[int, int | None]:
    """The offset of the body's first byte and the whole file's size, when the server says."""
    if response.status_code == 206:
        match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if not match:
            raise _Interrupted("partial response without a valid Content-Range")
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
