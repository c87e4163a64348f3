"""`python -m captioner predict`: captions image files and folders with a trained model, and with
--attention-maps draws where each word of an attention model's captions looked."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captioner.core.errors import PipelineError
from captioner.core.params import DecodingSettings
from captioner.core.paths import figure_name
from captioner.core.sources import undecodable_name
from captioner.inference.captioning import ImageCaptioner
from captioner.inputs.pixels import load_pixels
from captioner.model.attention_maps import attended_captions, attention_figure
from captioner.model.network import reads_regions

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# What a path is, by its stat mode, when it is not a regular file.
NOT_FILES = {stat.S_IFIFO: "a FIFO (named pipe), not a file",
             stat.S_IFCHR: "a device, not a file", stat.S_IFBLK: "a device, not a file",
             stat.S_IFSOCK: "a socket, not a file"}


@dataclass
class ImageFiles:
    """What predict was given: the files to caption, and each entry it will not read with why;
    `errors` are what it was asked for and cannot caption, `skipped` what a folder holds besides
    image files (hidden files, sub-folders)."""

    paths: list[Path] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def not_a_file(path: Path) -> str | None:
    """Why `path` is not a file predict can read (a missing one, a broken or looping link, a
    folder, FIFO, device or socket, one that cannot be read), found without opening anything
    but regular files; None for a readable file."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link that loops"
        if path.is_symlink():
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        return "no such file" if error.errno == errno.ENOENT else error.strerror
    if not stat.S_ISREG(mode):
        return NOT_FILES.get(stat.S_IFMT(mode), "not a regular file")
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as error:
        return f"cannot be read: {error.strerror}"
    return None


def shown_path(path: Path | str) -> str:
    """A path as one line shows it: control characters (a newline in a file name) escaped."""
    return CONTROL_CHARACTERS.sub(lambda match: repr(match.group())[1:-1], str(path))


def image_files(arguments: list[str]) -> ImageFiles:
    """The given files and the files of the given folders (sorted; hidden ones and sub-folders
    skipped), each entry that is not a readable file set aside with the reason."""
    found = ImageFiles()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            try:
                entries = sorted(path.iterdir())
            except OSError as error:
                found.errors.append((shown_path(path), f"cannot list it: {error.strerror}"))
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    found.skipped.append((shown_path(entry), "a hidden file"))
                elif entry.is_dir():
                    found.skipped.append((shown_path(entry), "a folder (predict looks only at the "
                                                             "files of the folders it is given)"))
                else:
                    _add(found, entry)
        else:
            _add(found, path)
    return found


def _add(found: ImageFiles, path: Path) -> None:
    if (shown := undecodable_name(str(path))) is not None:
        found.errors.append((shown, "the file name is not UTF-8; rename it"))
    elif (reason := not_a_file(path)) is not None:
        found.errors.append((shown_path(path), reason))
    else:
        found.paths.append(path)


def map_name(position: int, path: Path) -> str:
    """An attention figure's file name: the image's place among those captioned, then its name."""
    return figure_name(position, path.name, digits=3)


def write_attention_maps(captioner: ImageCaptioner, paths: list[Path], regions: np.ndarray,
                         folder: Path) -> list[str]:
    """Draws each image's caption word by word over where it looked into `folder`; the files."""
    folder.mkdir(parents=True, exist_ok=True)
    attended = attended_captions(captioner.trained.model, regions, captioner.settings,
                                 captioner.trained.vocabulary, captioner.batch_size)
    written = []
    for position, (path, caption) in enumerate(zip(paths, attended, strict=True)):
        target = folder / map_name(position, path)
        attention_figure(load_pixels(path), caption).save(target)
        written.append(str(target))
    return written


def predict(images: list[str], model_path: Path, settings: DecodingSettings, batch_size: int,
            as_json: bool, attention_maps: Path | None = None) -> int:
    """Prints the captions of `images` (files or folders), decoded with `settings`, `batch_size`
    at once, and with `attention_maps` each one's figure's path beside it; returns the exit code,
    1 if any image was unusable (each one reported on stderr)."""
    if attention_maps is not None and attention_maps.exists() and not attention_maps.is_dir():
        raise PipelineError(f"--attention-maps {attention_maps}: not a folder")
    captioner = ImageCaptioner(model_path, settings, batch_size)
    if attention_maps is not None and not reads_regions(captioner.trained.model):
        raise PipelineError(f"{model_path}: has no attention decoder (train.decoder attention), "
                            "so no attention maps")
    found = image_files(images)
    extraction = captioner.extractor.extract(found.paths)
    captions = captioner.caption_features(extraction.features)
    results = [{"image": str(path) if as_json else shown_path(path), "caption": caption.caption}
               for path, caption in zip(extraction.paths, captions, strict=True)]
    if attention_maps is not None:
        figures = write_attention_maps(captioner, extraction.paths, extraction.features,
                                       attention_maps)
        for result, figure in zip(results, figures, strict=True):
            result["attention_map"] = figure
    for path, reason in found.skipped:
        print(f"skipped: {path}: {reason}", file=sys.stderr)
    bad = [(shown_path(path), reason) for path, reason in extraction.bad]
    for path, reason in [*found.errors, *bad]:
        print(f"error: {path}: {reason}", file=sys.stderr)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print("\t".join(result.values()))
    return 1 if found.errors or extraction.bad else 0
