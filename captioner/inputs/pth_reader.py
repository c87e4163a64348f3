"""Reads a PyTorch state dict saved in the legacy (non-zip) .pth format into NumPy arrays.

The legacy format is five pickles in a row (magic number, protocol version, system info, the
state dict with tensors pointing at storages by key, the list of storage keys) followed by the raw
storages, each an int64 element count and its little-endian bytes. The unpickler resolves only the
few names a state dict of tensors needs, so no torch install is required and no pickled code runs.
Every unpickled value is type-checked before it is used, so nothing a crafted file nests (shared
tuples whose hash, comparison or repr doubles in cost with each level) is hashed, compared or
printed; a tensor must lie inside its storage without repeating its elements (no zero stride) and
hold at most MAX_TENSOR_ELEMENTS.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from captioner.core.errors import PipelineError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
# The most elements one tensor may hold: 1 GiB of float32, over a hundred times the largest
# EfficientNet-Lite or ResNet-50 tensor.
MAX_TENSOR_ELEMENTS = 1 << 28


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: _StorageRef, offset: int, shape: tuple[int, ...],
                       stride: tuple[int, ...], *_flags: Any) -> _TensorRef:
    """Stands in for torch._utils._rebuild_tensor_v2 (requires_grad and hooks are ignored)."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor without a storage")
    if not (_is_int(offset) and _are_ints(shape) and _are_ints(stride) and len(shape) == len(stride)):
        raise pickle.UnpicklingError("tensor with a malformed offset, shape or stride")
    return _TensorRef(storage, offset, shape, stride)


def _is_int(value: Any) -> bool:
    return type(value) is int


def _are_ints(values: Any) -> bool:
    return type(values) is tuple and all(type(value) is int for value in values)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only OrderedDict, the tensor rebuild function and the storage types."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (type(pid) is tuple and len(pid) == 6 and type(pid[0]) is str and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id (a {type(pid).__name__})")
        _, dtype, key, _location, numel, view = pid
        if not isinstance(dtype, np.dtype) or view is not None:
            raise pickle.UnpicklingError("unsupported storage (views of storages are not supported)")
        if type(key) is not str or not _is_int(numel) or numel < 0:
            raise pickle.UnpicklingError("storage with a malformed key or size")
        return _StorageRef(key, dtype, numel)


def _load_pickle(handle: BinaryIO) -> Any:
    return _RestrictedUnpickler(handle).load()


def _read_header(handle: BinaryIO) -> None:
    if _load_pickle(handle) != MAGIC_NUMBER:
        raise pickle.UnpicklingError("bad magic number")
    if _load_pickle(handle) != PROTOCOL_VERSION:
        raise pickle.UnpicklingError("unsupported protocol version")
    system = _load_pickle(handle)
    if not isinstance(system, dict) or not system.get("little_endian"):
        raise pickle.UnpicklingError("only little-endian checkpoints are supported")


def _read_storages(handle: BinaryIO, refs: dict[str, _StorageRef]) -> dict[str, np.ndarray]:
    keys = _load_pickle(handle)
    if type(keys) is not list or not all(type(key) is str for key in keys) or set(keys) != set(refs):
        raise pickle.UnpicklingError("storage key list does not match the tensors")
    storages = {}
    for key in keys:
        ref = refs[key]
        numel = int(np.frombuffer(_read_exactly(handle, 8), dtype="<i8")[0])
        if numel != ref.numel:
            raise pickle.UnpicklingError(f"storage {key} holds {numel} elements, expected {ref.numel}")
        data = _read_exactly(handle, numel * ref.dtype.itemsize)
        storages[key] = np.frombuffer(data, dtype=ref.dtype)
    return storages


def _read_exactly(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise EOFError("file ends inside a storage")
    return data


def _materialize(tensor: _TensorRef, storage: np.ndarray) -> np.ndarray:
    if min(tensor.shape, default=1) < 0:
        raise pickle.UnpicklingError("tensor with a negative size")
    elements = int(np.prod(tensor.shape, dtype=object))
    if elements > min(storage.size, MAX_TENSOR_ELEMENTS):
        raise pickle.UnpicklingError(f"tensor of {elements} elements in a storage of {storage.size}"
                                     f" (at most {MAX_TENSOR_ELEMENTS})")
    if elements == 0:
        return np.zeros(tensor.shape, dtype=storage.dtype)
    steps = list(zip(tensor.shape, tensor.stride, strict=True))
    if any(step <= 0 and size > 1 for size, step in steps):
        raise pickle.UnpicklingError("tensor repeats or reverses its storage (a stride below 1)")
    last = tensor.offset + sum((size - 1) * step for size, step in steps)
    if tensor.offset < 0 or last >= storage.size:
        raise pickle.UnpicklingError("tensor reaches outside its storage")
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset:], shape=tensor.shape,
        strides=[step * itemsize for step in tensor.stride], writeable=False,
    )
    return view.astype(storage.dtype.newbyteorder("="), copy=True)


def read_state_dict(handle: BinaryIO) -> dict[str, np.ndarray]:
    """Parses a legacy .pth stream into {parameter name: array}; raises UnpicklingError if malformed."""
    _read_header(handle)
    state = _load_pickle(handle)
    if not isinstance(state, dict) or not all(type(name) is str and isinstance(tensor, _TensorRef)
                                              for name, tensor in state.items()):
        raise pickle.UnpicklingError("not a state dict of tensors")
    storages = _read_storages(handle, {t.storage.key: t.storage for t in state.values()})
    return {name: _materialize(t, storages[t.storage.key]) for name, t in state.items()}


def read_pth(path: Path | str) -> dict[str, np.ndarray]:
    """Reads a legacy-format PyTorch state dict file into {parameter name: array}."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise PipelineError(f"{path}: cannot read weights: {error.strerror}") from None
    if data[:2] == b"PK":
        raise PipelineError(f"{path}: zip-format .pth is not supported, only the legacy format")
    try:
        return read_state_dict(io.BytesIO(data))
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise PipelineError(f"{path}: not a legacy PyTorch state dict: {error}") from None
