"""What a train run leaves beside the models: every member's epochs as a table
(metrics/train/epochs.tsv, which dvc.yaml's plots chart) and the training speeds."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from captioner.core.files import atomic_path
from captioner.core.phases import CROSS_ENTROPY
from captioner.training.data import TrainingData
from captioner.training.run_state import Progress

HISTORY_COLUMNS = ("member", "phase", "loss", "reward", "val_loss", "val_bleu4", "val_cider")


def write_history(path: Path, progresses: list[Progress]) -> None:
    """A TSV of every member's epochs (numbered from 1 in each) with the member (from 1), phase,
    loss (cross-entropy epochs), reward (self-critical epochs), val_loss, val_bleu4 and val_cider,
    atomically; a value an epoch does not have is left empty."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["epoch", *HISTORY_COLUMNS])
        for member, progress in enumerate(progresses, start=1):
            for number, logs in enumerate(progress.history, start=1):
                logs = {**logs, "member": member}
                writer.writerow([number, *(logs.get(column, "") for column in HISTORY_COLUMNS)])


def speed_metrics(progresses: list[Progress], data: TrainingData) -> dict[str, Any]:
    """Seconds of each epoch's fit (every member's in turn), and the words predicted per second
    over the cross-entropy ones."""
    history = [logs for progress in progresses for logs in progress.history]
    cross_entropy = [logs["fit_seconds"] for logs in history if logs["phase"] == CROSS_ENTROPY]
    return {"epoch_seconds": [round(logs["fit_seconds"], 2) for logs in history],
            "train_tokens_per_s": round(data.target_tokens * len(cross_entropy) / sum(cross_entropy),
                                        1)}
