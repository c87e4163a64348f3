"""What counts as an image file, and an image's id: one rule for download, tokenize and features.

An image file is a regular, non-hidden file ending in .jpg, .jpeg or .png (any case). Its id is its
path relative to the images root, with '/' between folders, so equal names in two folders never
collide.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def is_image_name(name: str) -> bool:
    """Whether a file name (or archive member path) names an image by its suffix, in any case."""
    base = PurePosixPath(name.replace("\\", "/")).name
    return base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith(".")


def image_id(path: Path, root: Path) -> str:
    """The id of the image at `path` under the images root `root`."""
    return path.relative_to(root).as_posix()


def list_images(root: Path) -> list[Path]:
    """The image files under `root`, in nested folders too (hidden folders skipped), sorted by id."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(Path(folder, name) for name in files
                     if is_image_name(name) and os.path.isfile(os.path.join(folder, name)))
    return sorted(found, key=lambda path: image_id(path, root))
