"""Stage train: fits the merge captioner with teacher forcing (cross-entropy), then fine-tunes it
with self-critical training (CIDEr-D reward), one epoch at a time, resumably; with train.ensemble > 1
it trains that many captioners in turn, each with its own seed, and publishes them as one ensemble
(see captioner.training.ensemble). Under train.distribute multi_worker every machine runs it
(captioner.training.distribute); only the chief writes anything into the project.
"""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

from captioner.core import devices, params
from captioner.core.errors import run_stage
from captioner.training import distribute
from captioner.training.ensemble import train_ensemble


def main() -> None:
    config = params.load(params.TrainParams)
    strategy = distribute.strategy_for(config.distribute)
    print(f"train: devices: {devices.describe(strategy)}", flush=True)
    train_ensemble(config, strategy)


if __name__ == "__main__":
    run_stage(main)
