"""One self-critical gradient step on one device and mirrored over two logical CPU devices, from
the same weights and samples; prints the largest change the step made to a weight on one device,
and the largest difference between the weights the two reach.

    python -m tests.scripts.self_critical_step
"""

from __future__ import annotations

import numpy as np

from captioner.core import quiet_start

quiet_start.install()

import tensorflow as tf  # noqa: E402

from captioner.core.phases import SELF_CRITICAL  # noqa: E402
from captioner.core.text import END_ID, START_ID  # noqa: E402
from captioner.training.self_critical import SelfCriticalTrainer  # noqa: E402
from tests.helpers.training import VOCABULARY, records, tiny_config, tiny_model  # noqa: E402


def stepped_weights(strategy: tf.distribute.Strategy) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The weights before and after one step on three images' two samples each, under `strategy`."""
    train, features = records(3, shift=0)
    with strategy.scope():
        model = tiny_model(tiny_config(self_critical_learning_rate=0.05, dropout=1e-6), SELF_CRITICAL)
        trainer = SelfCriticalTrainer(model, train, VOCABULARY, samples=2, batch_images=3,
                                      max_words=4)
    words = np.array([[4, 4, END_ID], [5, END_ID, 0], [6, 6, END_ID], [4, END_ID, 0],
                      [5, 5, END_ID], [6, END_ID, 0]], np.int32)
    previous = np.concatenate([np.full((6, 1), START_ID, np.int32), words[:, :-1]], axis=1)
    previous[previous == END_ID] = 0
    advantage = np.array([1.0, -1.0, 0.5, -0.5, 2.0, -2.0], np.float32)
    before = model.get_weights()
    trainer._apply(*trainer._replica_parts(
        [np.repeat(features, 2, axis=0), previous, words, advantage], 3),
        tf.constant(float((words != 0).sum())))
    return before, model.get_weights()


def main() -> None:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    before, one = stepped_weights(tf.distribute.get_strategy())
    _, two = stepped_weights(tf.distribute.MirroredStrategy(
        [device.name for device in tf.config.list_logical_devices("CPU")]))
    print(max(float(np.abs(a - b).max()) for a, b in zip(before, one, strict=True)),
          max(float(np.abs(a - b).max()) for a, b in zip(one, two, strict=True)))


if __name__ == "__main__":
    main()
