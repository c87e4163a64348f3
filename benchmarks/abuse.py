"""Load test of the caption service with abusive clients: what its memory and a good request do.

Starts `python -m captioner serve` (from --code, default this checkout, with its default flags) on
a trained model and, one at a time: 8 simultaneous 6000x6000 RGBA PNGs, then 8 16-bit greyscale
ones (peak resident memory, every answer); 150 clients stalled in their headers or half-way
through a body, and 2,000 idle sockets (a good request's latency while they are held, and how
long until the server has closed them all); 100 raw 19 MB uploads stalled one byte short (peak
memory, answers, time to close); a whole 25 MB upload refused with 413 (time until its connection
is closed); a foreign Host and a cross-origin POST (their statuses). Peak memory is the server's
VmRSS sampled every 20 ms, less its idle size. Prints a table, then one JSON object.

    python benchmarks/abuse.py --model models/model.keras [--code DIR] [--wait 60]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.server_process import resident_mb, served  # noqa: E402
from tests.helpers.network import free_port  # noqa: E402

SIDE = 6000
STALLED = 150
IDLE = 2000
HUGE_UPLOADS = 100
HUGE_BYTES = 19 * 1024 * 1024
OVER_CAP_BYTES = 25 * 1024 * 1024


class PeakMemory:
    """The largest VmRSS of a process while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb, self._done = pid, 0.0, threading.Event()

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak_mb = max(self.peak_mb, resident_mb(self.pid))
            time.sleep(0.02)


def png_bytes(mode: str) -> bytes:
    """A 6000x6000 PNG that compresses well (as an attacker's would): RGBA or 16-bit grey."""
    ramp = np.arange(SIDE, dtype=np.uint32)
    if mode == "RGBA":
        pixels = np.zeros((SIDE, SIDE, 4), np.uint8)
        pixels[..., 0], pixels[..., 1], pixels[..., 3] = ramp[None, :] % 256, ramp[:, None] % 256, 128
        image = Image.fromarray(pixels, "RGBA")
    else:
        image = Image.fromarray(((ramp[None, :] * 10 + ramp[:, None]) % 65536).astype(np.uint16))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def good_image() -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (224, 224, 3), np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def good_latency(url: str) -> tuple[float, int]:
    """A good caption request's seconds and status (-1 when it got no answer in 30 s)."""
    started = time.perf_counter()
    try:
        status = requests.post(f"{url}/caption", files={"file": ("good.jpg", good_image())},
                               timeout=30).status_code
    except requests.RequestException:
        status = -1
    return time.perf_counter() - started, status


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def all_closed_after(sockets: list[socket.socket], wait_s: float) -> float | None:
    """Seconds until the server has closed every socket (reading and dropping what it sends), or
    None if some are still open after `wait_s`."""
    started = time.monotonic()
    remaining = list(sockets)
    for sock in remaining:
        sock.setblocking(False)
    while remaining and time.monotonic() - started < wait_s:
        still = []
        for sock in remaining:
            try:
                if sock.recv(65536) == b"":
                    sock.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                sock.close()
                continue
            still.append(sock)
        remaining = still
        time.sleep(0.2)
    for sock in remaining:
        sock.close()
    return None if remaining else time.monotonic() - started


def head(port: int, length: int, content_type: str = "image/png") -> bytes:
    return (f"POST /caption HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}"
            f"\r\nContent-Length: {length}\r\n\r\n").encode()


def simultaneous_pngs(url: str, pid: int, data: bytes) -> dict:
    with PeakMemory(pid) as memory, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: requests.post(
            f"{url}/caption", files={"file": ("big.png", data)}, timeout=300).status_code,
            range(8)))
    return {"peak_mb": memory.peak_mb, "answers": sorted(answers)}


def stalled_clients(port: int, url: str, wait_s: float) -> dict:
    sockets = []
    for index in range(STALLED):
        sock = connect(port)
        if index % 2:
            sock.sendall(head(port, 100_000) + b"\x89PNG" + b"\0" * 50_000)
        else:
            sock.sendall(f"POST /caption HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        sockets.append(sock)
    seconds, status = good_latency(url)
    return {"good_s": seconds, "good_status": status, "closed_s": all_closed_after(sockets, wait_s)}


def idle_sockets(port: int, url: str, wait_s: float) -> dict:
    sockets = []
    for _ in range(IDLE):
        try:
            sockets.append(connect(port))
        except OSError:
            break
    seconds, status = good_latency(url)
    return {"opened": len(sockets), "good_s": seconds, "good_status": status,
            "closed_s": all_closed_after(sockets, wait_s)}


def huge_stalled_uploads(port: int, pid: int, wait_s: float) -> dict:
    chunk = b"\0" * (1024 * 1024)
    sockets = []
    with PeakMemory(pid) as memory:
        for _ in range(HUGE_UPLOADS):
            sock = connect(port)
            sock.sendall(head(port, HUGE_BYTES, "application/octet-stream"))
            try:
                for _ in range(HUGE_BYTES // len(chunk) - 1):
                    sock.sendall(chunk)
                sock.sendall(chunk[:-1])
            except OSError:
                pass  # refused (503) and closed while sending
            sockets.append(sock)
        closed = all_closed_after(sockets, wait_s)
    return {"peak_mb": memory.peak_mb, "closed_s": closed}


def refused_whole_upload(port: int, wait_s: float) -> dict:
    sock = connect(port)
    sock.sendall(head(port, OVER_CAP_BYTES, "application/octet-stream"))
    try:
        sock.sendall(b"\0" * OVER_CAP_BYTES)
    except OSError:
        pass
    sock.settimeout(10)
    try:
        status = sock.recv(12).decode(errors="replace")[9:12]
    except OSError:
        status = "no answer"
    return {"status": status, "closed_s": all_closed_after([sock], wait_s)}


def foreign(url: str) -> dict:
    host = requests.get(f"{url}/health", headers={"Host": "rebound.example"}, timeout=10)
    origin = requests.post(f"{url}/caption", headers={"Origin": "http://elsewhere.example"},
                           files={"file": ("good.jpg", good_image())}, timeout=30)
    return {"foreign_host": host.status_code, "cross_origin_post": origin.status_code}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained model.keras")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout whose `python -m captioner serve` runs (default: this one)")
    parser.add_argument("--wait", type=float, default=60.0,
                        help="longest wait for the server to close held connections")
    arguments = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as spool:
        environment = {**os.environ, "TMPDIR": spool, "PYTHONPATH": str(arguments.code)}
        flags = ["--model", str(arguments.model.resolve()), "--beam-size", "3",
                 "--length-penalty", "1", "--max-length", "30"]
        with served(port, flags, cwd=spool, env=environment) as server:
            good_latency(url)  # traced once
            idle_mb = resident_mb(server.pid)
            figures = {"idle_mb": idle_mb, "good_alone_s": good_latency(url)[0]}
            for mode in ("RGBA", "I;16"):
                result = simultaneous_pngs(url, server.pid, png_bytes(mode))
                figures[f"png_{mode}"] = {**result, "rise_mb": result["peak_mb"] - idle_mb}
            figures["stalled"] = stalled_clients(port, url, arguments.wait)
            figures["idle_sockets"] = idle_sockets(port, url, arguments.wait)
            figures["huge_stalled"] = huge_stalled_uploads(port, server.pid, arguments.wait)
            figures["refused_whole"] = refused_whole_upload(port, arguments.wait)
            figures.update(foreign(url))
            figures["after_mb"] = resident_mb(server.pid)
    print_table(figures, arguments.wait)
    print(json.dumps(figures))


def print_table(figures: dict, wait_s: float) -> None:
    def closed(seconds: float | None) -> str:
        return f"all closed after {seconds:.1f} s" if seconds is not None else \
            f"some still open after {wait_s:g} s"

    print(f"server idle: {figures['idle_mb']:.0f} MB; a good request alone: "
          f"{figures['good_alone_s']:.3f} s")
    print("| abuse | server | a good request |")
    print("|---|---|---|")
    for mode, name in (("RGBA", "RGBA"), ("I;16", "16-bit grey")):
        result = figures[f"png_{mode}"]
        print(f"| 8 simultaneous {SIDE}x{SIDE} {name} PNGs | peak {result['peak_mb']:.0f} MB "
              f"(+{result['rise_mb']:.0f}); answers {result['answers']} | |")
    stalled, idle = figures["stalled"], figures["idle_sockets"]
    print(f"| {STALLED} clients stalled in headers or body | {closed(stalled['closed_s'])} | "
          f"{stalled['good_status']} in {stalled['good_s']:.3f} s |")
    print(f"| {idle['opened']} idle sockets | {closed(idle['closed_s'])} | "
          f"{idle['good_status']} in {idle['good_s']:.3f} s |")
    huge = figures["huge_stalled"]
    print(f"| {HUGE_UPLOADS} raw 19 MB uploads stalled a byte short | peak {huge['peak_mb']:.0f} MB; "
          f"{closed(huge['closed_s'])} | |")
    whole = figures["refused_whole"]
    print(f"| a whole 25 MB upload (over the cap) | answered {whole['status']}; "
          f"{closed(whole['closed_s'])} | |")
    print(f"| foreign Host / cross-origin POST | {figures['foreign_host']} / "
          f"{figures['cross_origin_post']} | |")
    print(f"server after all: {figures['after_mb']:.0f} MB")


if __name__ == "__main__":
    main()
