"""Keeps a pretrained folder (captioner.core.placed) in step with the source params name, cheaply.

The pretrained stage reruns when its params change, often only a pin (a sha256) set for the file
already placed, so finding a source unchanged must cost next to nothing. A state file in the
scratch folder (not a DVC output) remembers per folder the source, what identified its content when
it was placed (a local file's size, mtime and inode; a server's ETag and Last-Modified), its sha256
and the placed file's size and mtime. The same source with the same identity, in a folder left as
placed, is not read at all; a URL costs one conditional request (HTTP 304). Otherwise the file is
fetched (captioner.acquire.fetching: resumable, checksummed) and hashed, and the folder is replaced only if
the content differs: a touched file, or the same file under another name or URL, changes nothing
that DVC tracks. A server that cannot be reached leaves the folder as it is, with a warning.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any

from dvc_objects.fs.utils import copyfile

from captioner.acquire.fetching import (
    DEFAULT_POLICY,
    Fetched,
    HttpPolicy,
    fetch,
    server_validators,
    unchanged_on_server,
)
from captioner.core.errors import PipelineError
from captioner.core.files import atomic_path, read_json, write_json
from captioner.core.placed import GZIP, MANIFEST, Kind, builtin_manifest, file_manifest
from captioner.core.sources import CHUNK_BYTES, check_sha256, local_path, source_name

PARTIAL = "partial"


def bring(kind: Kind, source: str, expected_sha256: str, scratch: Path,
          policy: HttpPolicy = DEFAULT_POLICY) -> tuple[dict[str, Any], str]:
    """Makes the kind's folder hold `source`, and its manifest's git-tracked copy say so; returns
    what metrics record of it and what was done: `builtin`, `unchanged` (nothing read), `same
    content` (read, folder kept) or `placed`."""
    record, action = _bring_folder(kind, source, expected_sha256, scratch, policy)
    write_json(kind.manifest_copy, read_json(kind.folder / MANIFEST))
    return record, action


def _bring_folder(kind: Kind, source: str, expected_sha256: str, scratch: Path,
                  policy: HttpPolicy) -> tuple[dict[str, Any], str]:
    state_file = scratch / f"{kind.stem}.json"
    if source in kind.builtins:
        if expected_sha256:
            raise PipelineError(f"{kind.setting}: '{source}' is not a file; leave "
                                f"{kind.sha256_setting} empty")
        with atomic_path(kind.folder) as folder:
            folder.mkdir()
            write_json(folder / MANIFEST, builtin_manifest(source))
        state_file.unlink(missing_ok=True)
        return {"source": source}, "builtin"
    name = kind.placed_name(source_name(source))
    state = read_json(state_file) if state_file.is_file() else None
    if state is not None and _still_current(kind, source, name, state, policy):
        check_sha256(source, expected_sha256, state["sha256"])
        action = "unchanged"
    else:
        state, action = _refresh(kind, source, expected_sha256, name, state, scratch, policy)
        write_json(state_file, state)
    return {"source": source, "sha256": state["sha256"], "bytes": state["bytes"]}, action


def _refresh(kind: Kind, source: str, expected_sha256: str, name: str, state: dict | None,
             scratch: Path, policy: HttpPolicy) -> tuple[dict[str, Any], str]:
    """Fetches the source; places it unless the folder already holds this content."""
    partial_dir = scratch / PARTIAL / kind.stem
    path = local_path(source)
    # Taken before the file is read: a change while it is hashed then shows on the next run.
    identity = _file_identity(path) if path is not None and path.is_file() else None
    fetched = fetch(source, expected_sha256, partial_dir, setting=kind.setting, policy=policy)
    if path is None:
        identity = server_validators(source, partial_dir)
    if state is not None and state["sha256"] == fetched.sha256 and _intact(kind, name, state):
        placed, action = state["placed"], "same content"
    else:
        placed, action = _place(kind, name, fetched, copy=path is not None), "placed"
    shutil.rmtree(partial_dir, ignore_errors=True)
    return {"source": source, "identity": identity, "sha256": fetched.sha256,
            "bytes": fetched.size_bytes, "placed": placed}, action


def _still_current(kind: Kind, source: str, name: str, state: dict, policy: HttpPolicy) -> bool:
    """Whether the folder still holds what `state` describes and the source is still that file."""
    if state["source"] != source or not _intact(kind, name, state):
        return False
    path = local_path(source)
    if path is not None:
        return path.is_file() and _file_identity(path) == state["identity"]
    if not any(state["identity"].values()):
        print(f"{source}: the server sent no ETag or Last-Modified: fetching it again to compare",
              file=sys.stderr)
        return False
    answer = unchanged_on_server(source, state["identity"], policy)
    if answer is None:
        print(f"warning: {source}: unreachable, keeping the copy in {kind.folder} "
              f"(sha256 {state['sha256']})", file=sys.stderr)
        return True
    return answer


def _file_identity(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}


def _intact(kind: Kind, name: str, state: dict) -> bool:
    """Whether the folder holds `name` as it was placed, with its manifest."""
    manifest, placed = kind.folder / MANIFEST, kind.folder / name
    if state["placed"]["name"] != name or not manifest.is_file() or not placed.is_file():
        return False
    stat = placed.stat()
    return (read_json(manifest) == file_manifest(name, state["sha256"])
            and [stat.st_size, stat.st_mtime_ns] == [state["placed"]["size"],
                                                     state["placed"]["mtime_ns"]])


def _place(kind: Kind, name: str, fetched: Fetched, copy: bool) -> dict[str, Any]:
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
        write_json(folder / MANIFEST, file_manifest(name, fetched.sha256))
    stat = (kind.folder / name).stat()
    return {"name": name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _gunzip(fetched: Fetched, target: Path) -> None:
    try:
        with gzip.open(fetched.path, "rb") as source, open(target, "wb") as output:
            shutil.copyfileobj(source, output, CHUNK_BYTES * 16)
    except (OSError, EOFError, zlib.error) as error:
        raise PipelineError(f"{fetched.source}: cannot unpack gzip: {error}") from None
