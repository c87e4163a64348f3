"""The evaluate stage's work: the chosen model's beam-search captions of every test image, their
coco-caption scores and diversity, the retrieval baseline's captions and scores beside them, the
report and the epoch table.

Writes the pages folder (captions.jsonl, report.html, samples.md) and the sample plots folder, each
replaced at once, and returns the metrics, the headline scores (BLEU-4, CIDEr, METEOR) first, so
that `dvc exp show` lists them first of the file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioner.core.files import atomic_path, write_jsonl
from captioner.core.params import EvaluateParams
from captioner.core.paths import ModelFolder
from captioner.model.artifacts import load_model
from captioner.model.attention_maps import AttendedCaption, attended_captions
from captioner.model.decoding import Decoder
from captioner.model.java_scorers import java
from captioner.model.network import reads_regions
from captioner.model.scoring import diversity, score_captions
from captioner.model.splits import Split, load_features, load_split, warn_without_features
from captioner.reporting.epoch_table import EpochTable, TrainRecords, build_epoch_table, choose_samples
from captioner.reporting.report import render_report, render_samples_markdown
from captioner.reporting.retrieval import RetrievalBaseline, choose_k
from captioner.reporting.sample_plots import write_sample_plots

HEADLINE = ("bleu4", "cider", "meteor")
# `dvc metrics show` and `dvc metrics diff` sort names alphabetically: BLEU-1..3 are written as
# bleu_1..bleu_3 ("_" sorts after "4"), so that bleu4 leads there as it leads eval.json's columns in
# `dvc exp show`.
LOWER_ORDER_BLEU = {f"bleu{n}": f"bleu_{n}" for n in (1, 2, 3)}


@dataclass(frozen=True)
class EvaluateInputs:
    """What the evaluate stage reads: the train stage's models folder, its table of epochs and its
    summary; the tokenize stage's splits (train and val for the retrieval baseline); the features
    and the images (the report's thumbnails)."""

    models: Path
    epochs: Path
    train_summary: Path
    train_split: Path
    val_split: Path
    test_split: Path
    features: Path
    images: Path


@dataclass(frozen=True)
class EvaluateOutputs:
    """What the evaluate stage writes besides its metrics: the pages folder (captions.jsonl,
    report.html, samples.md) and the sample plots folder."""

    pages: Path
    sample_plots: Path


def write_pages(rows: list[dict[str, Any]], scores: dict[str, float], baseline: dict[str, Any],
                table: EpochTable, attended: list[AttendedCaption] | None, config: EvaluateParams,
                images: Path, outputs: EvaluateOutputs) -> None:
    """The pages' captions, report (with where each word of the sample images' captions looked,
    for a model that attends) and Markdown epoch table, and the sample plots."""
    with atomic_path(outputs.pages) as folder:
        folder.mkdir()
        write_jsonl(folder / "captions.jsonl", rows)
        (folder / "report.html").write_text(
            render_report(rows[:config.report_images], images, scores, baseline, table, attended),
            encoding="utf-8")
        (folder / "samples.md").write_text(render_samples_markdown(table), encoding="utf-8")
    with atomic_path(outputs.sample_plots) as folder:
        write_sample_plots(table, images, folder)


def rounded(scores: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 5) for name, value in scores.items()}


def metric_names(scores: dict[str, float]) -> dict[str, float]:
    """Scores under their names in metrics/eval.json, the headline first (see LOWER_ORDER_BLEU)."""
    ordered = {name: scores[name] for name in HEADLINE if name in scores} | scores
    return {LOWER_ORDER_BLEU.get(name, name): value for name, value in ordered.items()}


def retrieval_baseline(splits: dict[str, Split], config: EvaluateParams) -> tuple[int, list[str]]:
    """The k chosen on validation, and the retrieval baseline's caption of every test image."""
    baseline = RetrievalBaseline(splits["train"])
    k = choose_k(baseline, splits["val"], config.retrieval_k).k
    return k, baseline.caption(splits["test"].features, [k])[k]


def evaluate_test_split(config: EvaluateParams, inputs: EvaluateInputs,
                        outputs: EvaluateOutputs) -> tuple[dict[str, Any], dict[str, float]]:
    """Captions, scores and writes the pages; returns the metrics and the decoding speed."""
    java_path = java()  # before decoding: a run that cannot be scored stops at once
    features = load_features(inputs.features)
    splits = {name: load_split(path, features) for name, path in (
        ("train", inputs.train_split), ("val", inputs.val_split), ("test", inputs.test_split))}
    test = splits["test"]
    warn_without_features({"test": test}, inputs.features)
    sample_rows = choose_samples(config.sample_images, test, inputs.test_split)
    models = ModelFolder(inputs.models)
    trained = load_model(models.model)
    captions, images_per_s = Decoder.from_model(trained.model).timed_captions(
        test.image_inputs(reads_regions(trained.model)), config.decoding, trained.vocabulary,
        config.batch_size, progress=True)
    images = [record["image"] for record in test.records]
    hypotheses = dict(zip(images, captions, strict=True))
    references = {record["image"]: record["captions"] for record in test.records}
    k, retrieved = retrieval_baseline(splits, config)
    scored = score_captions({"model": hypotheses, "retrieval": dict(zip(images, retrieved, strict=True))},
                            references, java_path)
    scores = metric_names(scored["model"])
    baseline = {"k": k, **rounded(metric_names(scored["retrieval"]))}
    rows = [{"image": image, "caption": hypotheses[image], "retrieval_baseline": retrieved[row],
             "references": references[image]} for row, image in enumerate(images)]
    table = build_epoch_table([images[row] for row in sample_rows],
                              lambda regions: test.image_inputs(regions)[sample_rows],
                              TrainRecords(models, inputs.epochs, inputs.train_summary),
                              config.decoding, config.batch_size)
    attended = (attended_captions(trained.model, test.image_inputs(True)[sample_rows],
                                  config.decoding, trained.vocabulary, config.batch_size)
                if reads_regions(trained.model) else None)
    write_pages(rows, scores, baseline, table, attended, config, inputs.images, outputs)
    metrics = {
        **rounded(scores),
        **rounded(diversity(captions)),
        "test_images": len(images),
        "test_images_without_features": len(test.without_features),
        "retrieval_baseline": baseline,
    }
    return metrics, {"decode_images_per_s": round(images_per_s, 2)}
