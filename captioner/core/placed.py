"""The folders of pretrained files that the pretrained stage fills and embed and extract_features
read: which sources each accepts, the name a file takes there, and the manifest saying what it holds.

A folder holds either only a manifest naming a built-in source (`{"builtin": "train"}`) or one file
under a fixed name (`vectors.bin`, `weights.h5`, ...) and a manifest with that name and the source
file's sha256. Nothing in it depends on the source's path or URL, so DVC, which hashes the folder,
sees a new file's content, never its new name.

The folder is cached by DVC; a copy of its manifest beside it (`vectors.json`) is kept in git, and
embed and extract_features depend on that copy, not on the folder: it names a file by its sha256, so
new content reruns them all the same, and a clone whose cache lacks the folder (a fresh one running
`dvc exp run --allow-missing`, which skips the pretrained stage as unchanged; DVC refuses to run a
stage whose dependency is missing) still runs them with a built-in source, which needs no file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath

from captioner.core.errors import PipelineError
from captioner.core.files import read_json
from captioner.core.paths import (
    PRETRAINED_VECTORS,
    PRETRAINED_VECTORS_MANIFEST,
    PRETRAINED_WEIGHTS,
    PRETRAINED_WEIGHTS_MANIFEST,
)

MANIFEST = "source.json"
GZIP = ".gz"


@dataclasses.dataclass(frozen=True)
class Kind:
    """A kind of pretrained file: its folder and the git-tracked copy of the folder's manifest, the
    params keys naming its source and pinning its content, the names that are not files, and the
    file-name endings accepted (longest first; empty: any ending)."""

    stem: str
    folder: Path
    manifest_copy: Path
    setting: str
    sha256_setting: str
    builtins: tuple[str, ...]
    endings: tuple[str, ...]

    def placed_name(self, source_name: str) -> str:
        """The name a source's file takes in the folder: the stem and the source's ending, a
        gzip-compressed `.bin` unpacked. Refuses an ending this kind does not read."""
        if not self.endings:
            ending = ".weights.h5" if source_name.endswith(".weights.h5") else PurePosixPath(
                source_name).suffix
            return self.stem + ending
        ending = next((end for end in self.endings if source_name.endswith(end)), None)
        if ending is None:
            raise PipelineError(f"{self.setting}: {source_name}: expected {', '.join(self.builtins)} "
                                f"or a {', '.join(self.endings)} file")
        return self.stem + (ending.removesuffix(GZIP) if ending == ".bin.gz" else ending)


# A .zip (fastText's wiki-news-300d-1M.vec.zip, crawl-300d-2M-subword.zip) is read for its .vec member.
VECTORS = Kind("vectors", PRETRAINED_VECTORS, PRETRAINED_VECTORS_MANIFEST, "embed.source",
               "embed.sha256", ("train",), (".vec.gz", ".vec", ".bin.gz", ".bin", ".zip"))
# Keras reads .weights.h5, .h5 and .keras files by their ending; an EfficientNet-Lite a .pth of any name.
WEIGHTS = Kind("weights", PRETRAINED_WEIGHTS, PRETRAINED_WEIGHTS_MANIFEST, "extract_features.weights",
               "extract_features.weights_sha256", ("imagenet", "none"), ())


@dataclasses.dataclass(frozen=True)
class Placed:
    """What a folder holds: a built-in source's name, or a file and its source's sha256."""

    builtin: str | None
    path: Path | None
    sha256: str | None

    def describe(self) -> str:
        """The builtin name, or `sha256:HEX` of the file: what metrics record of the source."""
        return self.builtin or f"sha256:{self.sha256}"


def builtin_manifest(builtin: str) -> dict[str, str]:
    """The manifest of a folder standing for a built-in source (nothing else in it)."""
    return {"builtin": builtin}


def file_manifest(name: str, sha256: str, placed_sha256: str) -> dict[str, str]:
    """The manifest of a folder holding the file `name`, placed from a source with this sha256;
    `placed_sha256` is the placed file's own (another where a .gz source was unpacked)."""
    return {"file": name, "sha256": sha256, "placed_sha256": placed_sha256}


def read_placed(kind: Kind) -> Placed:
    """What the kind's folder holds, as the git-tracked copy of its manifest says: a built-in
    source (the folder is not read), or a file, which the folder must hold."""
    if not kind.manifest_copy.is_file():
        raise PipelineError(f"{kind.manifest_copy}: not found (run the pretrained stage first)")
    record = read_json(kind.manifest_copy)
    if record.get("builtin"):
        return Placed(record["builtin"], None, None)
    manifest = kind.folder / MANIFEST
    if not manifest.is_file():
        raise PipelineError(f"{kind.folder}: missing, and {kind.manifest_copy} names a file "
                            f"(sha256 {record['sha256']}); run `dvc pull` or `dvc repro -f pretrained`")
    if read_json(manifest) != record:
        raise PipelineError(f"{kind.folder}: holds other content than {kind.manifest_copy} names; "
                            "run `dvc checkout` (or `dvc pull`)")
    return Placed(None, kind.folder / record["file"], record["sha256"])
