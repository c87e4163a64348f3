"""Stage train: fits the merge captioner with teacher forcing (cross-entropy), then fine-tunes it
with self-critical training (CIDEr-D reward), one epoch at a time, resumably; with train.ensemble > 1
it trains that many captioners in turn, each with its own seed, and writes them as one ensemble
(see captioner.training.stage). Under train.distribute multi_worker every machine runs it
(captioner.training.distribute); only the chief writes anything into the project.
"""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

from captioner.core import devices, params
from captioner.core.errors import run_stage
from captioner.core.paths import (
    EMBEDDINGS,
    FEATURES,
    MODELS,
    TRAIN_HISTORY,
    TRAIN_LIVE,
    TRAIN_RUN,
    TRAIN_SPEED,
    VOCABULARY,
    split_file,
)
from captioner.training import distribute
from captioner.training.stage import TrainInputs, TrainOutputs, train_stage

INPUTS = TrainInputs(vocabulary=VOCABULARY, train_split=split_file("train"),
                     val_split=split_file("val"), embeddings=EMBEDDINGS, features=FEATURES)
OUTPUTS = TrainOutputs(models=MODELS, live=TRAIN_LIVE, history=TRAIN_HISTORY, speed=TRAIN_SPEED,
                       runs=TRAIN_RUN)


def main() -> None:
    config = params.load(params.TrainParams)
    strategy = distribute.strategy_for(config.distribute)
    print(f"train: devices: {devices.describe(strategy)}", flush=True)
    train_stage(config, strategy, INPUTS, OUTPUTS)


if __name__ == "__main__":
    run_stage(main)
