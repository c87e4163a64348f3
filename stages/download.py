"""Stage download: fetches the Flickr8k archives into data/raw/images and data/raw/text."""

from __future__ import annotations

from pathlib import Path

from captioner import params
from captioner.download import download_dataset
from captioner.errors import run_stage
from captioner.files import write_json

RAW_DIR = Path("data/raw")
METRICS_FILE = Path("metrics/download.json")


def main() -> None:
    """Downloads, verifies and unpacks both archives, then writes the stage metrics."""
    settings = params.load(params.DownloadParams)
    metrics = download_dataset(settings, RAW_DIR)
    write_json(METRICS_FILE, metrics)
    print(f"download: {metrics['images']} images and {len(metrics['text_files'])} text files "
          f"in {RAW_DIR}")


if __name__ == "__main__":
    run_stage(main)
