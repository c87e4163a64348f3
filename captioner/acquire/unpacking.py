"""Extraction of zip and tar archives into the raw folders, on the readers of
captioner.acquire.archives (which check every member as they list it).

`__MACOSX/` and hidden files and folders are skipped. Images (`captioner.core.image_files`) keep
their path inside the archive, less the one top folder all of them share; text files (.txt, .token,
.json, .csv) are flattened by base name, refusing two with one name, or one name that is both a file
and a folder. The declared size is checked against the cap before writing and the written size while
writing, so an archive bomb is refused either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from captioner.acquire.archives import Member, archive_format, open_archive
from captioner.acquire.fetching import Fetched
from captioner.core.errors import PipelineError
from captioner.core.image_files import is_image_name
from captioner.core.sources import MB

TEXT_SUFFIXES = (".txt", ".token", ".json", ".csv")


@dataclasses.dataclass(frozen=True)
class Unpacked:
    """What was written: file paths relative to the destination (sorted) and their total bytes."""

    names: list[str]
    unpacked_bytes: int


def is_archive(fetched: Fetched) -> bool:
    """Whether a fetched file is a zip or tar archive, by its source's name or its content."""
    return archive_format(fetched) is not None


def unpack_images(archive: Fetched, destination: Path, max_bytes: int) -> Unpacked:
    """Unpacks the archive's images under `destination`, keeping their paths below the common top."""
    return _unpack(archive, destination, max_bytes, is_image_name, _image_targets)


def unpack_text(archive: Fetched, destination: Path, max_bytes: int) -> Unpacked:
    """Unpacks the archive's .txt, .token, .json and .csv files straight into `destination`."""
    return _unpack(archive, destination, max_bytes, is_text_name, _flat_targets)


def is_text_name(name: str) -> bool:
    """Whether a file name (or member path) names a caption or split file by its suffix."""
    base = PurePosixPath(name.replace("\\", "/")).name
    return base.lower().endswith(TEXT_SUFFIXES) and not base.startswith(".")


def _unpack(
    archive: Fetched, destination: Path, max_bytes: int, wanted: Callable[[str], bool],
    targets: Callable[[str, list[Member]], dict[str, Member]],
) -> Unpacked:
    with contextlib.closing(open_archive(archive, max_bytes)) as reader:
        chosen = targets(archive.source, [m for m in reader.members() if _is_wanted(m, wanted)])
        declared = sum(member.size for member in chosen.values())
        if declared > max_bytes:
            raise PipelineError(f"{archive.source}: declares {declared / MB:.1f} MB unpacked, "
                                f"over the {max_bytes / MB:.1f} MB left under "
                                "download.max_unpacked_mb (archive bomb?)")
        destination.mkdir(parents=True, exist_ok=True)
        written = 0
        for target, member in chosen.items():  # in archive order: no seeking back in a stream
            path = destination / target
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                for chunk in reader.read(member):
                    written += len(chunk)
                    if written > max_bytes:
                        raise PipelineError(f"{archive.source}: unpacks to more than "
                                            f"{max_bytes / MB:.1f} MB (download.max_unpacked_mb)")
                    handle.write(chunk)
    return Unpacked(sorted(chosen), written)


def _is_wanted(member: Member, wanted: Callable[[str], bool]) -> bool:
    parts = PurePosixPath(member.name).parts
    return wanted(member.name) and not any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _image_targets(source: str, members: list[Member]) -> dict[str, Member]:
    """Image members by id: their path less the single top folder that all of them share."""
    paths = [PurePosixPath(member.name).parts for member in members]
    shared_top = len({parts[0] for parts in paths}) == 1 and all(len(p) > 1 for p in paths)
    return _unique(source, [("/".join(parts[shared_top:]), member)
                            for parts, member in zip(paths, members, strict=True)])


def _flat_targets(source: str, members: list[Member]) -> dict[str, Member]:
    return _unique(source, [(PurePosixPath(member.name).name, member) for member in members])


def _unique(source: str, pairs: list[tuple[str, Member]]) -> dict[str, Member]:
    chosen: dict[str, Member] = {}
    for target, member in pairs:
        if target in chosen:
            raise PipelineError(f"{source}: members '{chosen[target].name}' and '{member.name}' "
                                f"would both unpack to '{target}'")
        chosen[target] = member
    folders = {str(parent) for target in chosen for parent in PurePosixPath(target).parents}
    both = sorted(folders & chosen.keys())
    if both:
        raise PipelineError(f"{source}: member '{chosen[both[0]].name}' is a file, and a folder of "
                            "other members")
    return chosen
