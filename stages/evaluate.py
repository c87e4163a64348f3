"""Stage evaluate: beam-search captions for every test image, coco-caption scores and a report;
a few test images captioned by every epoch's model (the epoch table, also as Markdown and PNG plots).
See captioner.reporting.evaluation."""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

from captioner.core import devices, params
from captioner.core.errors import run_stage
from captioner.core.files import write_json
from captioner.core.paths import (
    EVAL_METRICS,
    EVAL_SPEED,
    EVALUATION,
    FEATURES,
    MODELS,
    RAW_IMAGES,
    SAMPLE_PLOTS,
    TRAIN_HISTORY,
    TRAIN_SUMMARY,
    split_file,
)
from captioner.reporting.evaluation import (
    HEADLINE,
    EvaluateInputs,
    EvaluateOutputs,
    evaluate_test_split,
)

INPUTS = EvaluateInputs(models=MODELS, epochs=TRAIN_HISTORY, train_summary=TRAIN_SUMMARY,
                        train_split=split_file("train"), val_split=split_file("val"),
                        test_split=split_file("test"), features=FEATURES, images=RAW_IMAGES)
OUTPUTS = EvaluateOutputs(pages=EVALUATION, sample_plots=SAMPLE_PLOTS)


def main() -> None:
    config = params.load(params.EvaluateParams)
    print(f"evaluate: devices: {devices.describe()}", flush=True)
    metrics, speed = evaluate_test_split(config, INPUTS, OUTPUTS)
    write_json(EVAL_METRICS, metrics)
    write_json(EVAL_SPEED, speed)
    print("evaluate: " + ", ".join(f"{name} {metrics[name]:.4f}" for name in HEADLINE))


if __name__ == "__main__":
    run_stage(main)
