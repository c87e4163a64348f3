"""Runs the train stage in the current folder as one process of a distributed test, and keeps the
weights it trained.

    python -m tests.scripts.train_worker LOGICAL_CPUS WEIGHTS.npz

With LOGICAL_CPUS above 1 the CPU is first split into that many logical devices (what
train.distribute mirrored spreads over on a machine without GPUs). The trained model's weights go
to WEIGHTS.npz, which the stage itself never writes on a worker that is not the chief.
"""

from __future__ import annotations

import sys

import numpy as np

from captioner.core.errors import run_stage
from captioner.training import loop
from stages import train as train_stage


def main() -> None:
    # After stages.train, which quiets TensorFlow's start-up notices.
    import tensorflow as tf

    logical_cpus, weights_file = int(sys.argv[1]), sys.argv[2]
    if logical_cpus > 1:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
    trained = []
    stage_train = loop.train

    def train_and_keep(model, *arguments):
        trained.append(model)
        return stage_train(model, *arguments)

    loop.train = train_and_keep
    run_stage(train_stage.main)
    np.savez(weights_file, *trained[0].get_weights())


if __name__ == "__main__":
    main()
