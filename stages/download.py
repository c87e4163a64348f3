"""Stage download: brings the images and captions sources into data/raw/images and data/raw/text."""

from __future__ import annotations

from captioner import params
from captioner.download import download_dataset
from captioner.errors import run_stage
from captioner.files import write_json
from captioner.paths import DOWNLOAD_METRICS, DOWNLOAD_PARTIAL, RAW, RAW_IMAGES, RAW_TEXT


def main() -> None:
    """Fetches, verifies and unpacks (or copies) both sources, then writes the stage metrics."""
    settings = params.load(params.DownloadParams)
    metrics = download_dataset(settings, images_dir=RAW_IMAGES, text_dir=RAW_TEXT,
                               partial_dir=DOWNLOAD_PARTIAL)
    write_json(DOWNLOAD_METRICS, metrics)
    print(f"download: {metrics['images']} images and {len(metrics['text_files'])} text files "
          f"in {RAW}")


if __name__ == "__main__":
    run_stage(main)
