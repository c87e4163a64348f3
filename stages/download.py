"""Stage download: brings the images and captions sources into data/raw/images and data/raw/text."""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

from captioner.acquire.download import download_dataset
from captioner.core import params
from captioner.core.errors import run_stage
from captioner.core.files import write_json
from captioner.core.paths import (
    DOWNLOAD_PARTIAL,
    DOWNLOAD_RECORD,
    RAW,
    RAW_IMAGES,
    RAW_TEXT,
    RAW_TEXT_SOURCE,
)


def main() -> None:
    """Fetches, verifies and unpacks (or copies) both sources, then writes the stage metrics."""
    settings = params.load(params.DownloadParams)
    metrics = download_dataset(settings, images_dir=RAW_IMAGES, text_dir=RAW_TEXT,
                               text_source=RAW_TEXT_SOURCE,
                               partial_dir=DOWNLOAD_PARTIAL)
    write_json(DOWNLOAD_RECORD, metrics)
    print(f"download: {metrics['images']} images and {len(metrics['text_files'])} text files "
          f"in {RAW}")


if __name__ == "__main__":
    run_stage(main)
