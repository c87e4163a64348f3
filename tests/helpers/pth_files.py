"""Legacy PyTorch `.pth` files assembled byte by byte, for the tests of the restricted reader."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from captioner.inputs.pth_reader import MAGIC_NUMBER, PROTOCOL_VERSION

HEADER = b"".join(pickle.dumps(value, protocol=2) for value in (
    MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": 1001, "little_endian": True},
))


def _text(value: str) -> bytes:
    encoded = value.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def _ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"


def tensor_entry(name: str, key: str, storage_type: str, numel: int, offset: int,
                 shape: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """Pickle opcodes for `name: torch._utils._rebuild_tensor_v2(storage, ...)`, as torch writes."""
    storage = (b"(" + _text("storage") + f"ctorch\n{storage_type}\n".encode() + _text(key)
               + _text("cpu") + b"J" + struct.pack("<i", numel) + b"NtQ")
    return (_text(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage
            + b"J" + struct.pack("<i", offset) + _ints(shape) + _ints(stride)
            + b"\x89ccollections\nOrderedDict\n)RtR")


def write_legacy_pth(path: Path, tensors: list[bytes], storages: dict[str, np.ndarray]) -> None:
    """Writes header, state dict (of `tensor_entry`s), storage keys and raw storages in the legacy
    layout."""
    state = b"\x80\x02ccollections\nOrderedDict\n)R(" + b"".join(tensors) + b"u."
    raw = b"".join(struct.pack("<q", a.size) + a.tobytes() for a in storages.values())
    path.write_bytes(HEADER + state + pickle.dumps(list(storages), protocol=2) + raw)
