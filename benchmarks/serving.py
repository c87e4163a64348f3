"""Load benchmark of the caption service against the same work done offline.

In a built project (models/model.keras, the test split's images), it starts
`python -m captioner serve` as its own process, then sends the test images from 1, 4 and 16
concurrent clients (each waits for its answer before sending again) and prints images/s, p50/p95
latency and errors per level; then, at the most clients, it reads the server's resident memory
after 100 requests and after `--memory-requests`. The offline figure is predict's path in this
process: the same images through the CNN (the extractor's tf.data pipeline) and beam search in
its batches. Goal: the service at 16 clients at least 0.8x offline, no errors, memory flat.

    python benchmarks/serving.py [--project DIR] [--requests 300] [--clients 1 4 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from captioner.core import quiet_start  # noqa: E402

quiet_start.install()

from benchmarks.server_process import resident_mb, served  # noqa: E402
from captioner.core import params, paths  # noqa: E402
from captioner.core.files import read_jsonl  # noqa: E402
from captioner.inference.captioning import ImageCaptioner  # noqa: E402
from tests.helpers.network import free_port  # noqa: E402


def offline_rate(images: list[Path]) -> float:
    """Images/s of predict's work on `images` in this process: CNN features, then beam search."""
    config = params.load(params.EvaluateParams)
    captioner = ImageCaptioner(paths.BEST_MODEL, config.decoding, config.batch_size)
    captioner.caption_features(captioner.extractor.extract(images[:8]).features)  # traced once
    started = time.perf_counter()
    captioner.caption_features(captioner.extractor.extract(images).features)
    return len(images) / (time.perf_counter() - started)


def load(url: str, images: list[Path], clients: int, requests_count: int) -> dict[str, float]:
    """Sends `requests_count` images from `clients` threads; the rate, latencies and errors."""
    bodies = [path.read_bytes() for path in images]
    latencies: list[float] = []
    errors = []
    counter = iter(range(requests_count))
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                started = time.perf_counter()
                answer = session.post(f"{url}/caption", timeout=120,
                                      files={"file": ("image.jpg", bodies[index % len(bodies)])})
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if answer.status_code != 200:
                        errors.append(answer.status_code)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {"images_per_s": requests_count / seconds, "p50_s": float(np.percentile(latencies, 50)),
            "p95_s": float(np.percentile(latencies, 95)), "errors": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."), help="a built project")
    parser.add_argument("--requests", type=int, default=300, help="requests per client level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--memory-requests", type=int, default=2000)
    parser.add_argument("--batch-window-ms", type=float, default=20.0, help="the server's")
    arguments = parser.parse_args()
    os.chdir(arguments.project)
    images = [paths.RAW_IMAGES / record["image"]
              for record in read_jsonl(paths.split_file("test"))][:arguments.requests]

    offline = offline_rate(images)
    print(f"offline (CNN + beam search, {len(images)} images): {offline:.1f} images/s", flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with served(port, ["--batch-window-ms", str(arguments.batch_window_ms)]) as server:
        load(url, images[:8], 1, 8)  # traced once
        print("| clients | images/s | × offline | p50 s | p95 s | errors |")
        print("|---|---|---|---|---|---|")
        for clients in arguments.clients:
            figures = load(url, images, clients, arguments.requests)
            print(f"| {clients} | {figures['images_per_s']:.1f} | "
                  f"{figures['images_per_s'] / offline:.2f} | {figures['p50_s']:.3f} | "
                  f"{figures['p95_s']:.3f} | {figures['errors']} |", flush=True)
        most = max(arguments.clients)
        load(url, images, most, 100)
        after_100 = resident_mb(server.pid)
        figures = load(url, images, most, arguments.memory_requests - 100)
        print(f"server memory at {most} clients: {after_100:.0f} MB after 100 requests, "
              f"{resident_mb(server.pid):.0f} MB after {arguments.memory_requests} "
              f"({figures['errors']} errors)")


if __name__ == "__main__":
    main()
