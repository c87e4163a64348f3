"""What TensorFlow computes on, in the one line each stage that runs a model prints about it."""

from __future__ import annotations

import collections

import tensorflow as tf

# The strategies train.distribute names, by their tf.distribute class.
STRATEGY_NAMES = {tf.distribute.MirroredStrategy: "mirrored",
                  tf.distribute.MultiWorkerMirroredStrategy: "multi_worker"}


def _gpu_names() -> str:
    """The distinct model names of this machine's GPUs, e.g. `NVIDIA H100 80GB HBM3`."""
    return ", ".join(sorted({tf.config.experimental.get_device_details(gpu).get("device_name", "GPU")
                             for gpu in tf.config.list_physical_devices("GPU")}))


def describe(strategy: tf.distribute.Strategy | None = None) -> str:
    """`CPU`, `GPU (NAME)` (without a strategy TensorFlow uses the first GPU only, so `, 1 of N`
    follows where there are more) or, under a mirrored or multi-worker strategy, the devices of
    this machine's replicas, the strategy's train.distribute name and its replicas in all."""
    name = STRATEGY_NAMES.get(type(strategy))
    if name is None:
        gpus = len(tf.config.list_physical_devices("GPU"))
        if not gpus:
            return "CPU"
        return f"GPU ({_gpu_names()})" + (f", 1 of {gpus}" if gpus > 1 else "")
    kinds = collections.Counter(tf.DeviceSpec.from_string(device).device_type
                                for device in strategy.extended.worker_devices)
    local = ", ".join(f"{count} × {kind}" + (f" ({_gpu_names()})" if kind == "GPU" else "")
                      for kind, count in sorted(kinds.items()))
    return f"{local}, strategy {name}, {strategy.num_replicas_in_sync} replicas in all"
