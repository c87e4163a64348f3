"""A loopback HTTP file server for tests: Range requests, and faults on demand.

`serve_directory(root)` serves the files under `root` on 127.0.0.1 (ephemeral port) from a
background thread, honouring single `Range: bytes=...` requests, `If-Range` (a validator that
no longer matches gets the whole file) and `If-None-Match` (the current ETag gets 304 Not
Modified). Files carry an ETag (from their content) and Last-Modified.
Keyword arguments make it misbehave: ignore Range, send no validators, cut the first body short (or
hang there), or answer a fixed error status. `serve_endless_body()` answers every GET with a body
that never ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import hashlib
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RANGE = re.compile(r"bytes=(\d*)-(\d*)")
RESUMING_RANGE = re.compile(r"bytes=(\d+)-")
COPY_CHUNK = 64 * 1024
POLL_S = 0.05  # how soon the server thread notices shutdown


@dataclasses.dataclass(frozen=True)
class Request:
    """One request the server answered."""

    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int

    def resumed_from(self) -> int:
        """The offset this request's `Range: bytes=N-` asks to resume from (any other Range fails
        the test)."""
        match = RESUMING_RANGE.fullmatch(self.range or "")
        assert match, f"not a resuming Range: {self.range!r}"
        return int(match[1])


@dataclasses.dataclass
class ServedDirectory:
    """The running server: its base URL (no trailing slash) and the requests it answered."""

    url: str
    requests: list[Request]

    def url_for(self, name: str) -> str:
        """The URL of file `name` under the served root."""
        return f"{self.url}/{name}"


@dataclasses.dataclass
class _Behaviour:
    ignore_range: bool
    validators: bool
    drop_after_bytes: int | None
    hang_at_drop: bool
    status: int | None
    status_times: int | None
    requests: list[Request]
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    stopping: threading.Event = dataclasses.field(default_factory=threading.Event)

    def take_status(self) -> int | None:
        with self.lock:
            if self.status is None or self.status_times == 0:
                return None
            if self.status_times is not None:
                self.status_times -= 1
            return self.status

    def take_drop(self, length: int) -> int | None:
        with self.lock:
            if self.drop_after_bytes is None or self.drop_after_bytes >= length:
                return None
            drop, self.drop_after_bytes = self.drop_after_bytes, None
            return drop


def validators(path: Path) -> tuple[str, str]:
    """A file's strong ETag (from its content) and its Last-Modified date."""
    etag = '"' + hashlib.sha256(path.read_bytes()).hexdigest()[:16] + '"'
    return etag, email.utils.formatdate(path.stat().st_mtime, usegmt=True)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Returns the inclusive (first, last) byte of a single valid range; None means whole file.

    Raises ValueError for a valid range that selects no byte of the file (HTTP 416).
    """
    match = RANGE.fullmatch(header.strip()) if header else None
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = (int(value) if value else None for value in match.groups())
    if first is None:
        first, last = size - last, size - 1
    elif last is None or last >= size:
        last = size - 1
    elif last < first:
        return None
    if first >= size or last < max(first, 0):
        raise ValueError(f"range {header!r} selects nothing of {size} bytes")
    return max(first, 0), last


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, behaviour: _Behaviour, **kwargs: Any) -> None:
        self.behaviour = behaviour
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        with self.behaviour.lock:
            self.behaviour.requests.append(
                Request(self.command, self.path, self.headers.get("Range"),
                        self.headers.get("If-Range"), int(code))
            )

    def log_message(self, format: str, *args: Any) -> None:
        """Keeps test output quiet; requests are recorded by `log_request`."""

    def _respond(self, send_body: bool) -> None:
        status = self.behaviour.take_status()
        if status is not None:
            self.send_error(status)
            return
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            if send_body:
                super().do_GET()
            else:
                super().do_HEAD()
            return
        size = path.stat().st_size
        etag, last_modified = validators(path)
        if self.behaviour.validators and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        header = None if self.behaviour.ignore_range else self.headers.get("Range")
        if self.headers.get("If-Range") not in (None, etag, last_modified):
            header = None  # the file changed since the client's copy: send it whole
        try:
            byte_range = parse_range(header, size)
        except ValueError:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        first, last = byte_range or (0, size - 1)
        self.send_response(206 if byte_range else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "none" if self.behaviour.ignore_range else "bytes")
        if self.behaviour.validators:
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
        if byte_range:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if send_body:
            self._send_bytes(path, first, last - first + 1)

    def _send_bytes(self, path: Path, offset: int, length: int) -> None:
        drop = self.behaviour.take_drop(length)
        if drop is not None:
            length = drop
            self.close_connection = True
        with open(path, "rb") as handle:
            handle.seek(offset)
            while length > 0:
                chunk = handle.read(min(COPY_CHUNK, length))
                self.wfile.write(chunk)
                length -= len(chunk)
        if drop is not None and self.behaviour.hang_at_drop:
            self.wfile.flush()
            self.behaviour.stopping.wait()


@contextlib.contextmanager
def serve_directory(
    root: Path,
    *,
    ignore_range: bool = False,
    send_validators: bool = True,
    drop_after_bytes: int | None = None,
    hang_at_drop: bool = False,
    status: int | None = None,
    status_times: int | None = None,
) -> Iterator[ServedDirectory]:
    """Serves `root` over HTTP on 127.0.0.1 for the duration of the block.

    ignore_range: answer every GET with the whole file (200), as servers without Range do.
    send_validators: send ETag and Last-Modified (without them a client cannot resume safely).
    drop_after_bytes: the first body longer than this stops after this many bytes, and the
    connection closes (once; later bodies are whole).
    hang_at_drop: at that point send nothing more but keep the connection open until the server
    stops, as a stalled transfer does.
    status: answer requests with this error status instead (the first `status_times` only,
    or all of them when None).
    """
    requests: list[Request] = []
    behaviour = _Behaviour(ignore_range, send_validators, drop_after_bytes, hang_at_drop, status,
                           status_times, requests)

    def handler(*args: Any) -> _Handler:
        return _Handler(*args, behaviour=behaviour, directory=str(root))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield ServedDirectory(f"http://{host}:{port}", requests)
    finally:
        behaviour.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _EndlessHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(bytes(COPY_CHUNK))
        except OSError:
            return

    def log_message(self, format: str, *args: Any) -> None:
        """Keeps test output quiet."""


@contextlib.contextmanager
def serve_endless_body() -> Iterator[str]:
    """Answers every GET on 127.0.0.1 with 200 and zeros that never end, for the duration of the
    block; yields the base URL (no trailing slash)."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EndlessHandler) as server:
        thread = threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True)
        thread.start()
        try:
            host, port = server.server_address[:2]
            yield f"http://{host}:{port}"
        finally:
            server.shutdown()
            thread.join(timeout=5)
