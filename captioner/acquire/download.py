"""The download stage's work: brings the images and captions sources into the raw folders.

`download.images_url` names a zip or tar archive (URL or path) or a local folder of images;
`download.text_url` an archive or a single captions file; a record of that source
(`captioner.core.paths.RAW_TEXT_SOURCE`) lets tokenize read a single file whatever its name and name
it as the user gave it. A folder's images are cloned file by file (copy-on-write where the file
system can, a plain copy otherwise), never linked: DVC's cache would take hold of linked files and
change the user's own. Both raw folders are replaced only once everything is in place, so a failed
or killed run leaves the previous outputs (or none); the partial downloads are removed after a
successful run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from dvc_objects.fs.utils import copyfile

from captioner.acquire.fetching import DEFAULT_POLICY, Cap, Fetched, HttpPolicy, fetch
from captioner.acquire.unpacking import TEXT_SUFFIXES, Unpacked, is_archive, unpack_images, unpack_text
from captioner.core.errors import PipelineError
from captioner.core.files import atomic_path, write_json
from captioner.core.image_files import IMAGE_SUFFIXES, image_id, list_images
from captioner.core.params import DownloadParams
from captioner.core.sources import MB, local_path, source_name

CAP_NAME = "download.max_unpacked_mb"


def download_dataset(
    settings: DownloadParams, *, images_dir: Path, text_dir: Path, text_source: Path,
    partial_dir: Path, policy: HttpPolicy = DEFAULT_POLICY,
) -> dict[str, Any]:
    """Fills `images_dir` and `text_dir` from the sources in `settings`, and records the captions'
    source in `text_source`; returns the metrics.

    Remote files download into `partial_dir`, where a killed run's downloads wait to be resumed.
    """
    budget = settings.max_unpacked_mb * MB
    with atomic_path(text_dir) as text_temporary, atomic_path(images_dir) as images_temporary:
        text, text_origin, single = _bring_text(settings, text_temporary, partial_dir, budget, policy)
        images, images_origin = _bring_images(settings, images_temporary, partial_dir,
                                              budget - text.unpacked_bytes, policy)
    write_json(text_source, {"source": settings.text_url,
                             "single_file": text.names[0] if single else None})
    if partial_dir.exists():
        shutil.rmtree(partial_dir)
    return {
        "images": len(images.names),
        "text_files": text.names,
        "unpacked_bytes": text.unpacked_bytes + images.unpacked_bytes,
        "archives": {"text": text_origin, "images": images_origin},
    }


def _bring_text(
    settings: DownloadParams, destination: Path, partial_dir: Path, budget: int, policy: HttpPolicy,
) -> tuple[Unpacked, dict[str, Any], bool]:
    """The captions unpacked or copied into `destination`, where they came from, and whether the
    source was a single file."""
    fetched = fetch(settings.text_url, settings.text_sha256, partial_dir,
                    setting="download.text_url", cap=Cap(budget, CAP_NAME), policy=policy)
    single = not is_archive(fetched)
    if single:
        text = _copy_file(fetched, destination, budget)
    else:
        text = unpack_text(fetched, destination, budget)
    if not text.names:
        raise PipelineError(f"{settings.text_url}: no {', '.join(TEXT_SUFFIXES)} files in the archive")
    return text, _file_origin(fetched), single


def _bring_images(
    settings: DownloadParams, destination: Path, partial_dir: Path, budget: int, policy: HttpPolicy,
) -> tuple[Unpacked, dict[str, Any]]:
    source = settings.images_url
    folder = local_path(source)
    if folder is not None and folder.is_dir():
        if settings.images_sha256:
            raise PipelineError(f"{source}: is a folder; download.images_sha256 checks archives "
                                "only, leave it empty")
        images = _clone_images(source, folder, destination, budget)
        origin: dict[str, Any] = {"source": source, "bytes": images.unpacked_bytes}
    else:
        fetched = fetch(source, settings.images_sha256, partial_dir,
                        setting="download.images_url", cap=Cap(budget, CAP_NAME), policy=policy)
        images = unpack_images(fetched, destination, budget)
        origin = _file_origin(fetched)
    if not images.names:
        where = "folder" if folder is not None and folder.is_dir() else "archive"
        raise PipelineError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in the {where}")
    return images, origin


def _clone_images(source: str, folder: Path, destination: Path, budget: int) -> Unpacked:
    """Clones a folder's images (nested folders too) under `destination`, ids kept. A symbolic link
    in the folder is refused: what it points to lies outside the source the param names."""
    _refuse_links(source, folder)
    files = list_images(folder)
    total = sum(path.stat().st_size for path in files)
    if total > budget:
        raise PipelineError(f"{source}: holds {total / MB:.1f} MB of images, over the "
                            f"{budget / MB:.1f} MB left under download.max_unpacked_mb")
    destination.mkdir(parents=True, exist_ok=True)
    for path in files:
        target = destination / image_id(path, folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        copyfile(path, target)
    return Unpacked([image_id(path, folder) for path in files], total)


def _refuse_links(source: str, folder: Path) -> None:
    for parent, subfolders, files in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in sorted([*subfolders, *files]):
            if os.path.islink(os.path.join(parent, name)):
                link = (Path(parent) / name).relative_to(folder)
                raise PipelineError(f"{source}: {link.as_posix()} is a symbolic link; a folder "
                                    "source must hold its images itself")


def _copy_file(fetched: Fetched, destination: Path, budget: int) -> Unpacked:
    """Copies a single captions file into `destination` under its source's name."""
    if fetched.size_bytes > budget:
        raise PipelineError(f"{fetched.source}: {fetched.size_bytes / MB:.1f} MB, over the "
                            f"{budget / MB:.1f} MB left under download.max_unpacked_mb")
    name = source_name(fetched.source)
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fetched.path, destination / name)
    return Unpacked([name], fetched.size_bytes)


def _file_origin(fetched: Fetched) -> dict[str, Any]:
    return {"source": fetched.source, "bytes": fetched.size_bytes, "sha256": fetched.sha256}
