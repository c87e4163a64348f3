"""The download tests' harness: fetches and downloads with quick retries, served archives, the stage run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from captioner.acquire.download import download_dataset
from captioner.acquire.fetching import Cap, HttpPolicy, fetch
from captioner.core.errors import PipelineError
from captioner.core.params import DownloadParams
from captioner.core.paths import RAW_TEXT_SOURCE
from tests.helpers.archives import make_zip, write_files
from tests.helpers.project import ROOT, run

FAST = HttpPolicy(attempts=3, backoff_s=0.0, connect_timeout_s=2.0, read_timeout_s=5.0)
ONE_TRY = HttpPolicy(attempts=1, backoff_s=0.0, connect_timeout_s=2.0, read_timeout_s=5.0)
CAP = Cap(1 << 40, "no cap a test reaches")
SETTING = "download.images_url"
TOKENS = b"1000268201_693b08cb0e.jpg#0\tA child in a pink dress .\n"
STAGE = [sys.executable, "-m", "stages.download"]
STAGE_TIMEOUT_S = 120


def fetch_bytes(url: str, partial_dir: Path, sha256: str = "") -> bytes:
    """Fetches `url` into `partial_dir` as the `SETTING` source, with `FAST` retries; its bytes."""
    fetched = fetch(url, sha256, partial_dir, setting=SETTING, cap=CAP, policy=FAST)
    assert fetched.path.parent == partial_dir
    return fetched.path.read_bytes()


def download_settings(images: Path | str, text: Path | str, **overrides: object) -> DownloadParams:
    """The download params for these two sources: no sha256 pins, a 100 MB cap, then `overrides`."""
    values = {"images_url": str(images), "text_url": str(text), "images_sha256": "",
              "text_sha256": "", "max_unpacked_mb": 100, **overrides}
    return DownloadParams(**values)


def download(settings: DownloadParams, raw: Path, policy: HttpPolicy = FAST) -> dict:
    """Runs the stage's library call into `raw` (images/, text/, the text source record, .partial/);
    its metrics."""
    return download_dataset(settings, images_dir=raw / "images", text_dir=raw / "text",
                            text_source=raw / RAW_TEXT_SOURCE.name,
                            partial_dir=raw / ".partial", policy=policy)


def write_served_archives(folder: Path, seed: int) -> dict[str, bytes]:
    """Writes images.zip (three 400 kB images: over 1 MB) and text.zip into `folder`; the images."""
    folder.mkdir(exist_ok=True)
    images = {f"{seed}_{i}.jpg": os.urandom(400_000) for i in range(3)}
    make_zip(folder / "images.zip", {f"Flicker8k_Dataset/{name}": data for name, data in images.items()})
    make_zip(folder / "text.zip", {"Flickr8k_text/Flickr8k.token.txt": TOKENS})
    return images


def cut_first_download(server_url: str, served: Path, raw: Path) -> int:
    """A first download of `write_served_archives`' files whose images are cut and not retried, as
    by a killed process; returns the size of the partial file it leaves."""
    settings = download_settings(f"{server_url}/images.zip", served / "text.zip")
    with pytest.raises(PipelineError, match="download failed after 1 attempts"):
        download(settings, raw, policy=ONE_TRY)
    partial_files = [p for p in (raw / ".partial").iterdir() if p.name.endswith("images.zip")]
    assert len(partial_files) == 1
    assert 0 < partial_files[0].stat().st_size < (served / "images.zip").stat().st_size
    assert not (raw / "images").exists()
    return partial_files[0].stat().st_size


def write_user_folder(root: Path) -> Path:
    """A COCO-like folder of the user's: nested images, a hidden one, and other files."""
    return write_files(root, {"train2014/a.jpg": b"a" * 1000, "val2014/deeper/b.PNG": b"b" * 500,
                              "val2014/c.jpeg": b"c", "README.txt": b"not an image",
                              ".thumbnails/t.jpg": b"hidden", "train2014/.d.jpg": b"hidden"})


def run_download_stage(project: Path) -> subprocess.CompletedProcess:
    """`STAGE` in `project` with this repository's code, to its end, whatever its exit code."""
    return run(STAGE, project, timeout=STAGE_TIMEOUT_S, check=False,
               extra_env={"PYTHONPATH": str(ROOT)})


def wait_for_stalled_file(folder: Path, pattern: str, timeout_s: float = 60) -> Path:
    """The file matching `pattern` in `folder`, once it is not empty and stops growing."""
    deadline, last_size = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        size = found[0].stat().st_size if found else 0
        if size and size == last_size:
            return found[0]
        last_size = size
        time.sleep(0.3)
    raise AssertionError(f"no growing {pattern} in {folder} within {timeout_s} s")
