"""Cross-entropy training speed of the merge and the attention decoder on the same data, timed in
turns so that both see the same machine: the seconds per batch of each, their ratio, and the epoch
each would take.

Both train on the project's training split with its train params (one decoder each), through the
training loop's own batches (training.data.caption_dataset, the attention decoder's regions read
from the memory-mapped grid.npy). After a warm-up batch each, they alternate `--turn` batches at a
time until each has trained `--batches`. Needs a project where extract_features ran with
extract_features.grid: true. Prints one line per decoder and, last, one JSON object.

    python benchmarks/decoder_speed.py --project DIR [--batches 120] [--turn 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from captioner.core import quiet_start  # noqa: E402

quiet_start.install()

from captioner.core import params  # noqa: E402
from captioner.core.errors import run_stage  # noqa: E402
from captioner.core.files import read_npy  # noqa: E402
from captioner.core.paths import EMBEDDINGS, FEATURES, split_file  # noqa: E402
from captioner.model.splits import load_features, load_split  # noqa: E402
from captioner.training.data import caption_dataset, epoch_seed, seed_everything  # noqa: E402
from captioner.training.loop import compiled_captioner  # noqa: E402

DECODERS = ("merge", "attention")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=120, help="timed batches of each decoder")
    parser.add_argument("--turn", type=int, default=20, help="batches of one before the other's")
    arguments = parser.parse_args()
    project = arguments.project
    config = params.load(params.TrainParams, project / "params.yaml")
    train = load_split(project / split_file("train"), load_features(project / FEATURES))
    embedding = read_npy(project / EMBEDDINGS)
    runs = {}
    for decoder in DECODERS:
        seed_everything(config.seed)
        member = dataclasses.replace(config, decoder=decoder, ensemble=1)
        inputs = train.image_inputs(decoder == "attention")
        model = compiled_captioner(member, embedding, inputs.shape[1:])
        dataset = caption_dataset(train.records, inputs, config.batch_size,
                                  shuffle_seed=epoch_seed(config.seed, 0))
        batches = iter(dataset.repeat())
        model.train_on_batch(*next(batches))
        runs[decoder] = {"model": model, "batches": batches, "seconds": 0.0,
                         "epoch_batches": int(dataset.cardinality())}
    for _ in range(0, arguments.batches, arguments.turn):
        for run in runs.values():
            started = time.perf_counter()
            for inputs, targets in itertools.islice(run["batches"], arguments.turn):
                run["model"].train_on_batch(inputs, targets)
            run["seconds"] += time.perf_counter() - started
    figures = {}
    for decoder, run in runs.items():
        per_batch = run["seconds"] / arguments.batches
        figures[decoder] = {"s_per_batch": round(per_batch, 4),
                            "epoch_s": round(per_batch * run["epoch_batches"], 1)}
        print(f"{decoder}: {per_batch * 1000:.1f} ms a batch, an epoch of {run['epoch_batches']} "
              f"batches about {per_batch * run['epoch_batches']:.0f} s", flush=True)
    figures["attention_over_merge"] = round(figures["attention"]["s_per_batch"]
                                            / figures["merge"]["s_per_batch"], 2)
    print(f"attention / merge: {figures['attention_over_merge']:.2f}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    run_stage(main)
