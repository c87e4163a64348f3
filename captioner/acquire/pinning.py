"""The pretrained stage's work: makes a pretrained folder (captioner.core.placed) hold the source a
param names, by one simple rule.

A built-in source (`train`, `imagenet`, `none`) gets its manifest alone. A local source (a path or a
`file://` URL) must be a file in the project's `pretrained/` folder, symbolic links resolved: one
outside it is refused, with the command that brings it there, before anything is read or placed. A
folder that already holds the file of the pinned sha256 (`embed.sha256`,
`extract_features.weights_sha256`) is kept without touching the source (the placed copy is hashed: one
changed by hand is replaced). Anything else is fetched (captioner.acquire.fetching: resumable,
checksummed), hashed and placed, unless the folder already holds that content: the same file under
another name or URL changes nothing DVC tracks.

When it runs is DVC's to say: when these params change, or a file in the project's `pretrained/`
folder does (an unfrozen `dvc import-url`, which DVC checks at its source, or a `dvc add`ed file,
named in the params). That is why a local file must be there: DVC would not see a file elsewhere
change, and the old copy would stay in use. A URL named directly is pinned by its sha256: new content
under the same URL is taken by a new pin, or unpinned by `dvc repro -f pretrained`.
"""

from __future__ import annotations

import gzip
import os
import shlex
import shutil
import zlib
from pathlib import Path
from typing import Any

from dvc_objects.fs.utils import copyfile

from captioner.acquire.fetching import DEFAULT_POLICY, Cap, Fetched, HttpPolicy, fetch
from captioner.core.errors import PipelineError
from captioner.core.files import atomic_path, read_json, write_json
from captioner.core.placed import GZIP, MANIFEST, Kind, builtin_manifest, file_manifest
from captioner.core.sources import CHUNK_BYTES, MB, local_path, sha256_of, source_name

PARTIAL = "partial"
# The largest pretrained file fetched or unpacked: fastText's biggest .bin (cc.en.300.bin) is 7.2 GB.
MAX_PRETRAINED_MB = 16 * 1024
PRETRAINED_CAP = Cap(MAX_PRETRAINED_MB * MB, "captioner.acquire.pinning.MAX_PRETRAINED_MB")


def bring(kind: Kind, source: str, expected_sha256: str, scratch: Path, sources: Path,
          policy: HttpPolicy = DEFAULT_POLICY) -> tuple[dict[str, Any], str]:
    """Makes the kind's folder hold `source`, and its manifest's git-tracked copy say so; returns
    what the record keeps of it and what was done: `builtin`, `kept` (pinned and already placed,
    nothing read), `same content` (fetched, folder kept) or `placed`. Unfinished downloads wait in
    `scratch` to be resumed. A local source must be a file in `sources`, the project's folder of
    pretrained files (relative paths are relative to the working directory, the project root)."""
    if source in kind.builtins:
        if expected_sha256:
            raise PipelineError(f"{kind.setting}: '{source}' is not a file; leave "
                                f"{kind.sha256_setting} empty")
        _replace_folder(kind, builtin_manifest(source))
        record, action = {"source": source}, "builtin"
    else:
        name = kind.placed_name(source_name(source))
        refuse_outside(kind, source, sources)
        if expected_sha256 and _holds(kind, name, expected_sha256):
            sha256, action = expected_sha256, "kept"
        else:
            sha256, action = _fetch_and_place(kind, source, expected_sha256, name, scratch, policy)
        record = {"source": source, "sha256": sha256,
                  "placed_bytes": (kind.folder / name).stat().st_size}
    write_json(kind.manifest_copy, read_json(kind.folder / MANIFEST))
    return record, action


def refuse_outside(kind: Kind, source: str, sources: Path) -> None:
    """Refuses a local source that is not in `sources` once symbolic links are resolved: DVC, which
    hashes that folder for the stage, would not see it change. The one line names the setting and
    the source as given, and the command that brings the file there (its argument the path as given,
    a `file://` URL's path, or for a link in the folder its target). Built-in sources and URLs pass."""
    path = None if source in kind.builtins else local_path(source)
    if path is None:
        return
    folder, resolved = sources.resolve(), path.resolve()
    if resolved.is_relative_to(folder):
        return
    where = f"{sources.as_posix()}/"
    if Path(os.path.abspath(path)).is_relative_to(os.path.abspath(sources)):
        target = str(resolved)
        problem = f"{source} resolves to {resolved}, outside {where}"
        bring_it = f"replace the link: run `dvc import-url {shlex.quote(target)} {where}`"
    else:
        target = str(path) if source.startswith("file:") else source
        problem = f"{source} is outside {where}"
        bring_it = f"run `dvc import-url {shlex.quote(target)} {where}`"
    raise PipelineError(f"{kind.setting}: {problem}, where DVC cannot see it change; {bring_it} "
                        f"(or copy it there and `dvc add` it) and set {kind.setting}: "
                        f"{where}{Path(target).name}")


def _holds(kind: Kind, name: str, sha256: str) -> bool:
    """Whether the folder holds `name` as placed from a source with this sha256 (the placed file
    read and hashed: a copy changed by hand is not kept)."""
    manifest, placed = kind.folder / MANIFEST, kind.folder / name
    if not (manifest.is_file() and placed.is_file()):
        return False
    record = read_json(manifest)
    return (record.get("file"), record.get("sha256")) == (name, sha256) \
        and record == file_manifest(name, sha256, sha256_of(placed))


def _fetch_and_place(kind: Kind, source: str, expected_sha256: str, name: str, scratch: Path,
                     policy: HttpPolicy) -> tuple[str, str]:
    partial_dir = scratch / PARTIAL / kind.stem
    fetched = fetch(source, expected_sha256, partial_dir, setting=kind.setting, cap=PRETRAINED_CAP,
                    policy=policy)
    if _holds(kind, name, fetched.sha256):
        action = "same content"
    else:
        _place(kind, name, fetched, copy=local_path(source) is not None)
        action = "placed"
    shutil.rmtree(partial_dir, ignore_errors=True)
    return fetched.sha256, action


def _replace_folder(kind: Kind, manifest: dict[str, str]) -> None:
    with atomic_path(kind.folder) as folder:
        folder.mkdir()
        write_json(folder / MANIFEST, manifest)


def _place(kind: Kind, name: str, fetched: Fetched, copy: bool) -> None:
    """Replaces the folder with the fetched file under `name` (unpacked when the name drops the
    source's .gz) and its manifest. A local source is cloned (copy-on-write where the file system
    can), a download moved."""
    with atomic_path(kind.folder) as folder:
        folder.mkdir()
        target = folder / name
        if source_name(fetched.source).endswith(GZIP) and not name.endswith(GZIP):
            _gunzip(fetched, target)
        elif copy:
            copyfile(fetched.path, target)
        else:
            shutil.move(fetched.path, target)
        write_json(folder / MANIFEST, file_manifest(name, fetched.sha256, sha256_of(target)))


def _gunzip(fetched: Fetched, target: Path) -> None:
    written = 0
    try:
        with gzip.open(fetched.path, "rb") as source, open(target, "wb") as output:
            while chunk := source.read(CHUNK_BYTES * 16):
                written += len(chunk)
                if written > PRETRAINED_CAP.max_bytes:
                    raise PipelineError(f"{fetched.source}: unpacks to more than "
                                        f"{PRETRAINED_CAP.max_bytes / MB:.0f} MB, the cap set by "
                                        f"{PRETRAINED_CAP.name}")
                output.write(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise PipelineError(f"{fetched.source}: cannot unpack gzip: {error}") from None
