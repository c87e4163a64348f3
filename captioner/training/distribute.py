"""train.distribute: the tf.distribute strategy training runs under, which process writes the
outputs, and how a multi-worker run shares the chief's state.

Under `multi_worker` every machine runs the train stage, with TF_CONFIG naming the cluster and its
own task. All of them take part in every step and every collective op (saving a model included),
but only the chief writes into the project: the others keep their run folder in a temporary
directory, removed at the end. A resumed run starts every worker from the chief's checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import keras
import numpy as np
import tensorflow as tf

from captioner.core import devices
from captioner.core.errors import PipelineError
from captioner.training.run_state import Progress, RunFolder

# The Keras release whose private multi-worker log reduction `patch_keras_step_logs` replaces.
PATCHED_KERAS = "3.15"
KERAS_TRAINER = "keras.src.backend.tensorflow.trainer"
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


def check_tf_config() -> None:
    """Raises PipelineError unless TF_CONFIG names a cluster and this process's task in it."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise PipelineError("train.distribute is multi_worker but TF_CONFIG is not set; each "
                            f"machine needs one naming the cluster and its own task, e.g. "
                            f"{TF_CONFIG_EXAMPLE}")
    try:
        config = json.loads(raw)
        cluster, task_type, index = config["cluster"], config["task"]["type"], config["task"]["index"]
        valid = (isinstance(cluster, dict) and task_type in ("chief", "worker")
                 and isinstance(index, int) and 0 <= index < len(cluster.get(task_type, []))
                 and len(cluster.get("chief", [])) <= 1)
    except (ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"TF_CONFIG: not JSON naming a cluster and a task ({error!r}); "
                            f"expected e.g. {TF_CONFIG_EXAMPLE}") from None
    if not valid:
        raise PipelineError("TF_CONFIG: the task must be a chief or worker of the cluster, its "
                            f"index within the cluster's list (at most one chief); e.g. "
                            f"{TF_CONFIG_EXAMPLE}")


def strategy_for(distribute: str) -> tf.distribute.Strategy:
    """The strategy train.distribute names: the default (one device), mirrored over every local
    GPU (or, without one, every logical CPU device), or multi-worker as TF_CONFIG says.

    Call it before TensorFlow runs anything: a multi-worker strategy must exist before that.
    """
    if distribute == "none":
        return tf.distribute.get_strategy()
    if distribute == "mirrored":
        local = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in local])
    check_tf_config()
    patch_keras_step_logs()
    return tf.distribute.MultiWorkerMirroredStrategy()


def patch_keras_step_logs(trainer: ModuleType | None = None) -> None:
    """Keras 3.15 reduces each step's scalar logs along axis 0 across workers, which fails
    (keras-team/keras#20585); averaged over this worker's replicas instead, they are only the step
    logs: an epoch's loss is read from the loss metric, whose variables sum over all workers.

    Replaces the private function that decides it, refusing, in one line, a Keras whose function
    is gone or takes other arguments: the patch would silently do nothing there.
    """
    if trainer is None:
        try:
            trainer = importlib.import_module(KERAS_TRAINER)
        except ImportError:
            trainer = None
    target = getattr(trainer, "_collective_all_reduce_multi_worker", None)
    if not callable(target) or list(inspect.signature(target).parameters) != ["strategy"]:
        raise PipelineError(
            f"train.distribute multi_worker: keras {keras.__version__} has no "
            f"{KERAS_TRAINER}._collective_all_reduce_multi_worker(strategy), "
            f"which this project replaces for Keras {PATCHED_KERAS} (keras-team/keras#20585); "
            f"install the keras of requirements.txt")
    trainer._collective_all_reduce_multi_worker = lambda strategy: False


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def untie_from_strategy(strategy: tf.distribute.Strategy, model: keras.Model) -> None:
    """Lets Keras 3.15 fit and evaluate a model built under a mirrored or multi-worker strategy.

    Tied to the strategy, fit and evaluate first average a batch over the replicas to build the
    loss's state, which fails where the replicas' parts of it differ in size (a batch of odd size)
    and across workers always (keras-team/keras#20585). Untied, the model builds that state when
    the step is first traced, and fit and evaluate, which must then run inside `strategy.scope()`,
    still split every batch between the replicas and sum their gradients. The optimizer's state is
    built here, in the scope: built while the step is traced, it fails on several local replicas.
    """
    if isinstance(strategy, tuple(devices.STRATEGY_NAMES)):
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
        model._distribute_strategy = None


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the outputs: always, but under multi_worker only the chief
    task, or worker 0 where the cluster has no chief."""
    return strategy.extended.should_checkpoint


@contextlib.contextmanager
def run_folder(folder: Path, chief: bool) -> Iterator[Path]:
    """`folder` on the chief; on another worker a folder in a temporary directory, removed on
    leaving, for the models and checkpoints every worker saves but only the chief keeps."""
    if chief:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="captioner-worker-") as scratch:
        yield Path(scratch) / folder.name


def _from_chief(strategy: tf.distribute.Strategy, value: np.ndarray) -> np.ndarray:
    """The chief's `value` on every worker; each passes an array of the same shape and dtype."""
    chief = tf.constant([int(is_chief(strategy))])
    flags, values = (strategy.gather(strategy.experimental_distribute_values_from_function(
        lambda _, part=part: part), axis=0) for part in (chief, tf.constant(value)[None]))
    return values[int(np.argmax(flags.numpy()))].numpy()


def chief_progress(strategy: tf.distribute.Strategy, progress: Progress) -> Progress:
    """The chief's progress on every worker of a multi-worker run (the others have no run folder
    to resume from); `progress` itself under any other strategy."""
    if not is_multi_worker(strategy):
        return progress
    text = json.dumps(dataclasses.asdict(progress)).encode()
    length = int(_from_chief(strategy, np.array([len(text)], np.int64))[0])
    mine = np.frombuffer(text, np.uint8) if is_chief(strategy) else np.zeros(length, np.uint8)
    shared = _from_chief(strategy, mine.astype(np.int32)).astype(np.uint8)
    return Progress(**json.loads(shared.tobytes()))


def load_chief_checkpoint(strategy: tf.distribute.Strategy, run: RunFolder, progress: Progress,
                          model: keras.Model) -> None:
    """Sets `model`'s weights and optimizer state from the chief's checkpoint of `progress`: the
    chief reads it, and under multi_worker the other workers get both from the chief.

    Call it outside the strategy's scope: there the checkpoint loads into plain variables, on the
    chief alone, where under the scope their creation would be a collective op of all workers.
    """
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    if is_chief(strategy):
        run.load_checkpoint(progress, model)
    if is_multi_worker(strategy):
        for variable in [*model.weights, *model.optimizer.variables]:
            variable.assign(_from_chief(strategy, keras.ops.convert_to_numpy(variable)))
