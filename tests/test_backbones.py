"""Tests that the backbones carry real ImageNet weights and produce features of the right size."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest
import skimage.data
from PIL import Image

from captioner.core.errors import PipelineError
from captioner.core.params import BACKBONES
from captioner.inputs.backbones import build_backbone, feature_dim
from captioner.inputs.pixels import load_pixels

CAT_CLASSES = range(281, 286)
COFFEE_CLASSES = (967, 968, 504)  # espresso, cup, coffee mug
RESNET50_NOTOP = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _photo_pixels(tmp_path: Path, name: str) -> np.ndarray:
    path = tmp_path / f"{name}.png"
    Image.fromarray(getattr(skimage.data, name)()).save(path)
    return load_pixels(path).astype(np.float32)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_imagenet_weights_classify_photos(tmp_path, name):
    model = build_backbone(name, "imagenet", include_top=True)
    pixels = np.stack([_photo_pixels(tmp_path, "chelsea"), _photo_pixels(tmp_path, "coffee")])

    cat, coffee = np.argmax(model.predict(pixels, verbose=0), axis=-1)

    assert cat in CAT_CLASSES
    assert coffee in COFFEE_CLASSES


FEATURE_DIMS = {"efficientnet_lite0": 1280, "efficientnet_lite1": 1280, "efficientnet_lite2": 1280,
                "resnet50": 2048}


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_params_allow_is_built_with_its_feature_length(name):
    model = build_backbone(name, "none")
    features = model.predict(np.full((2, 224, 224, 3), 128.0, np.float32), verbose=0)
    assert feature_dim(model) == FEATURE_DIMS[name]
    assert features.shape == (2, FEATURE_DIMS[name])


def test_resnet50_loads_a_local_weights_file(tmp_path):
    source = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg")
    path = tmp_path / "resnet50.weights.h5"
    source.save_weights(path)

    model = build_backbone("resnet50", str(path))

    loaded = model.get_layer("resnet50").get_layer("conv1_conv").kernel.numpy()
    np.testing.assert_array_equal(loaded, source.get_layer("conv1_conv").kernel.numpy())


def test_resnet50_imagenet_offline_fails_with_a_clear_message(monkeypatch):
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    cached = keras_home / "models" / RESNET50_NOTOP
    if cached.exists():
        pytest.skip("Keras ResNet50 weights are cached, so no download is attempted")
    for proxy in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # a closed port: the download must fail
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)

    with pytest.raises(PipelineError, match="cannot load weights 'imagenet', download needs internet"):
        build_backbone("resnet50", "imagenet")


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nothing.pth"
    with pytest.raises(PipelineError, match="nothing.pth: efficientnet_lite0 weights file not found"):
        build_backbone("efficientnet_lite0", str(missing))
