"""The evaluate stage's work: the published model's beam-search captions of every test image, their
coco-caption scores and diversity, the retrieval baseline's captions and scores beside them, the
report and the epoch table.

Writes data/evaluation (captions.jsonl, report.html, samples.md) and data/sample_plots, each
replaced at once, and returns the metrics, the headline scores (BLEU-4, CIDEr) first, so that
`dvc exp show` opens on them.
"""

from __future__ import annotations

import time
from typing import Any

from captioner.core.files import atomic_path, write_jsonl
from captioner.core.params import EvaluateParams
from captioner.core.paths import BEST_MODEL, EVALUATION, RAW_IMAGES, SAMPLE_PLOTS
from captioner.core.text import decode
from captioner.model.artifacts import CaptionModel, load_model
from captioner.model.decoding import Decoder
from captioner.model.java_scorers import java
from captioner.model.scoring import diversity, score_captions
from captioner.model.splits import Split, load_features, load_split, warn_without_features
from captioner.reporting.epoch_table import EpochTable, build_epoch_table, choose_samples
from captioner.reporting.report import render_report, render_samples_markdown
from captioner.reporting.retrieval import RetrievalBaseline, choose_k
from captioner.reporting.sample_plots import write_sample_plots

HEADLINE = ("bleu4", "cider", "meteor")


def caption_test_split(trained: CaptionModel, test: Split,
                       config: EvaluateParams) -> tuple[dict[str, str], float]:
    """Every test image's caption, and decoding's speed in images per second."""
    decoder = Decoder.from_model(trained.model)
    # Trace the graph functions first, so the speed measured is decoding's, not tracing's.
    decoder.caption_ids(test.features[:config.batch_size], config.beam_size, max_length=2)
    started = time.perf_counter()
    captions = decoder.caption_ids(test.features, config.beam_size, config.max_length,
                                   config.length_penalty, config.batch_size, progress=True)
    seconds = time.perf_counter() - started
    images = [record["image"] for record in test.records]
    hypotheses = {image: decode(ids, trained.vocabulary)
                  for image, ids in zip(images, captions, strict=True)}
    return hypotheses, len(images) / seconds


def write_pages(rows: list[dict[str, Any]], scores: dict[str, float], baseline: dict[str, Any],
                table: EpochTable, config: EvaluateParams) -> None:
    """data/evaluation's captions, report and Markdown epoch table, and the sample plots."""
    with atomic_path(EVALUATION) as folder:
        folder.mkdir()
        write_jsonl(folder / "captions.jsonl", rows)
        (folder / "report.html").write_text(
            render_report(rows[:config.report_images], RAW_IMAGES, scores, baseline, table),
            encoding="utf-8")
        (folder / "samples.md").write_text(render_samples_markdown(table), encoding="utf-8")
    with atomic_path(SAMPLE_PLOTS) as folder:
        write_sample_plots(table, RAW_IMAGES, folder)


def rounded(scores: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 5) for name, value in scores.items()}


def retrieval_baseline(splits: dict[str, Split], config: EvaluateParams) -> tuple[int, list[str]]:
    """The k chosen on validation, and the retrieval baseline's caption of every test image."""
    baseline = RetrievalBaseline(splits["train"])
    k = choose_k(baseline, splits["val"], config.retrieval_k).k
    return k, baseline.caption(splits["test"].features, [k])[k]


def evaluate_test_split(config: EvaluateParams) -> tuple[dict[str, Any], dict[str, float]]:
    """Captions, scores and writes the pages; returns the metrics and the decoding speed."""
    java_path = java()  # before decoding: a run that cannot be scored stops at once
    features = load_features()
    splits = {name: load_split(name, features) for name in ("train", "val", "test")}
    test = splits["test"]
    warn_without_features({"test": test})
    sample_rows = choose_samples(config.sample_images, test)
    hypotheses, images_per_s = caption_test_split(load_model(BEST_MODEL), test, config)
    images = list(hypotheses)  # the test split's order
    references = {record["image"]: record["captions"] for record in test.records}
    k, retrieved = retrieval_baseline(splits, config)
    scored = score_captions({"model": hypotheses, "retrieval": dict(zip(images, retrieved, strict=True))},
                            references, java_path)
    scores, baseline = scored["model"], {"k": k, **rounded(scored["retrieval"])}
    rows = [{"image": image, "caption": hypotheses[image], "retrieval_baseline": retrieved[row],
             "references": references[image]} for row, image in enumerate(images)]
    table = build_epoch_table([images[row] for row in sample_rows], test.features[sample_rows], config)
    write_pages(rows, scores, baseline, table, config)
    ordered = {name: scores[name] for name in HEADLINE} | scores
    metrics = {
        **rounded(ordered),
        **rounded(diversity(list(hypotheses.values()))),
        "test_images": len(images),
        "test_images_without_features": len(test.without_features),
        "beam_size": config.beam_size,
        "retrieval_baseline": baseline,
    }
    return metrics, {"decode_images_per_s": round(images_per_s, 2)}
