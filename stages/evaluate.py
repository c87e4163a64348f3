"""Stage evaluate: beam-search captions for every test image, coco-caption scores and a report;
a few test images captioned by every epoch's model (the epoch table, also as Markdown and PNG plots)."""

from __future__ import annotations

import time

from captioner import devices, params
from captioner.artifacts import load_model
from captioner.decoding import Decoder
from captioner.epoch_table import build_epoch_table, choose_samples
from captioner.errors import run_stage
from captioner.files import atomic_path, write_json, write_jsonl
from captioner.paths import BEST_MODEL, EVAL_METRICS, EVAL_SPEED, EVALUATION, RAW_IMAGES, SAMPLE_PLOTS
from captioner.report import render_report, render_samples_markdown
from captioner.sample_plots import write_sample_plots
from captioner.scoring import diversity, score_captions
from captioner.splits import load_features, load_split, warn_without_features
from captioner.text import decode


def main() -> None:
    config = params.load(params.EvaluateParams)
    print(f"evaluate: devices: {devices.describe()}", flush=True)
    test = load_split("test", load_features())
    warn_without_features({"test": test})
    images = [record["image"] for record in test.records]
    sample_rows = choose_samples(config.sample_images, test)
    trained = load_model(BEST_MODEL)

    decoder = Decoder.from_model(trained.model)
    # Trace the graph functions first, so the speed measured is decoding's, not tracing's.
    decoder.caption_ids(test.features[:config.batch_size], config.beam_size, max_length=2)
    started = time.perf_counter()
    captions = decoder.caption_ids(test.features, config.beam_size, config.max_length,
                                   config.length_penalty, config.batch_size, progress=True)
    seconds = time.perf_counter() - started

    hypotheses = {image: decode(ids, trained.vocabulary)
                  for image, ids in zip(images, captions, strict=True)}
    references = {record["image"]: record["captions"] for record in test.records}
    scores = score_captions(hypotheses, references)
    rows = [{"image": image, "caption": hypotheses[image], "references": references[image]}
            for image in images]
    table = build_epoch_table([images[row] for row in sample_rows], test.features[sample_rows], config)
    with atomic_path(EVALUATION) as folder:
        folder.mkdir()
        write_jsonl(folder / "captions.jsonl", rows)
        (folder / "report.html").write_text(
            render_report(rows[:config.report_images], RAW_IMAGES, scores, table), encoding="utf-8")
        (folder / "samples.md").write_text(render_samples_markdown(table), encoding="utf-8")
    with atomic_path(SAMPLE_PLOTS) as folder:
        write_sample_plots(table, RAW_IMAGES, folder)
    write_json(EVAL_METRICS, {
        **{name: round(value, 5) for name, value in scores.items()},
        **{name: round(value, 5) for name, value in diversity(list(hypotheses.values())).items()},
        "test_images": len(images),
        "test_images_without_features": len(test.without_features),
        "beam_size": config.beam_size,
    })
    write_json(EVAL_SPEED, {"decode_images_per_s": round(len(images) / seconds, 2)})
    print("evaluate: " + ", ".join(f"{name} {value:.4f}" for name, value in scores.items()))


if __name__ == "__main__":
    run_stage(main)
