"""`python -m captioner serve` as a process of its own for the service benchmarks: started, waited
for until it answers, stopped; and its resident memory."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests


def resident_mb(pid: int) -> float:
    """A process's resident memory (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextlib.contextmanager
def served(port: int, flags: list[str], **popen: Any) -> Iterator[subprocess.Popen]:
    """`python -m captioner serve --port PORT FLAGS` (Popen's keywords: cwd, env), once it answers
    GET /health; stopped on leaving."""
    server = subprocess.Popen([sys.executable, "-m", "captioner", "serve", "--port", str(port),
                               *flags], stdout=subprocess.DEVNULL, **popen)
    try:
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except requests.ConnectionError:
                if server.poll() is not None:
                    raise SystemExit("the server stopped before it served") from None
                time.sleep(0.5)
        yield server
    finally:
        server.terminate()
        server.wait(30)
