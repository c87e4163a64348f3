"""The evaluate stage's pages: report.html (the epoch table; for a model that attends, where each
word of the sample images' captions looked; then test images with their generated and reference
captions, and the scores) and samples.md (the epoch table in Markdown)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from PIL import Image

from captioner.inputs.pixels import load_pixels
from captioner.model.attention_maps import AttendedCaption, attention_figure
from captioner.reporting.epoch_table import EpochRow, EpochTable, unsaved_note
from captioner.reporting.sample_plots import open_photo

THUMBNAIL_BOX = (128, 96)
STYLE = (
    "body{font-family:sans-serif;margin:2em}figure{display:inline-block;"
    "vertical-align:top;width:300px;margin:0 1em 2em 0}figure img{width:300px}"
    "ol{padding-left:1.2em;color:#555;font-size:.9em}"
    ".baseline{color:#555;font-style:italic;margin:.3em 0}"
    "table.epochs{border-collapse:collapse;font-size:.9em}"
    ".scroll{overflow-x:auto}"
    ".epochs th,.epochs td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;max-width:140px}"
    ".epochs th small{font-weight:normal;color:#555;word-break:break-all}"
    ".epochs .chosen{background:#ffec96;font-weight:bold}"
    ".epochs td.number{text-align:right;white-space:nowrap}"
    "figure.attention{width:auto;display:block}figure.attention img{width:auto;max-width:100%}"
)


def render_report(rows: list[dict[str, Any]], images: Path, scores: dict[str, float],
                  baseline: dict[str, Any], table: EpochTable,
                  attended: list[AttendedCaption] | None = None) -> str:
    """HTML with the epoch table, then (given `attended`, the table's images' captions with their
    attention) where each word looked, then each of `rows`' images embedded with its generated
    caption, the retrieval baseline's caption and its references."""
    header = " · ".join(f"{name} {value:.3f}" for name, value in scores.items())
    baseline_header = " · ".join(f"{name} {value:.3f}" for name, value in baseline.items()
                                 if name != "k")
    cards = []
    for row in rows:
        data = base64.b64encode((images / row["image"]).read_bytes()).decode("ascii")
        references = "".join(f"<li>{html.escape(text)}</li>" for text in row["references"])
        cards.append(
            f'<figure><img src="data:image/jpeg;base64,{data}" alt="{html.escape(row["image"])}">'
            f"<figcaption><b>{html.escape(row['caption'])}</b>"
            f"<p class='baseline'>retrieval: {html.escape(row['retrieval_baseline'])}</p>"
            f"<ol>{references}</ol><small>{html.escape(row['image'])}</small></figcaption></figure>"
        )
    return (
        f"<!doctype html><meta charset='utf-8'><title>Caption report</title><style>{STYLE}</style>"
        f"<h1>Captions by epoch</h1>{epoch_table_html(table, images)}"
        + (attention_html(table.images, attended, images) if attended else "") +
        f"<h1>Generated captions on test images</h1><p>model: {html.escape(header)}</p>"
        f"<p>retrieval baseline (the consensus caption of the {baseline['k']} nearest training "
        f"images, no decoder): {html.escape(baseline_header)}</p>"
        + "".join(cards)
    )


def png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def attention_html(image_ids: list[str], attended: list[AttendedCaption], images: Path) -> str:
    """One figure per image: its caption's words, each over the photo lit where it looked."""
    figures = []
    for image, caption in zip(image_ids, attended, strict=True):
        words = html.escape(" ".join(caption.words))
        figure = png_uri(attention_figure(load_pixels(images / image), caption))
        figures.append(f'<figure class=attention><img src="{figure}" alt="{words}"><figcaption>'
                       f"<b>{words}</b> <small>{html.escape(image)}</small></figcaption></figure>")
    return ("<h1>Where each word looked</h1><p>The published model's caption of each sample image, "
            "word by word: above each word, the photo as the CNN saw it, lit where the decoder "
            "attended when it chose that word (its regions' weights, smoothly upsampled; an "
            "ensemble shows its first attention member's weights on the ensemble's caption).</p>"
            + "".join(figures))


def thumbnail_uri(path: Path) -> str:
    """The image at `path` shrunk to a thumbnail, as a JPEG data URI."""
    buffer = io.BytesIO()
    open_photo(path, THUMBNAIL_BOX).save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def bleu_text(row: EpochRow) -> str:
    return "–" if row.bleu4 is None else f"{row.bleu4:.4f}"


def legend(table: EpochTable, layout: str) -> str:
    """What the table shows, after `layout` (how it is laid out), as one paragraph of plain text."""
    chosen = (f"the rows are the epochs of the ensemble's first member, and the last row, chosen, is "
              f"the ensemble in {table.chosen_model}" if any(row.ensemble for row in table.rows)
              else f"the chosen epoch is the one in {table.chosen_model}")
    return (f"{layout} Captions decode with {table.decoding}; val BLEU-4 is the epoch's score on "
            f"the validation images in the train stage; {chosen}. " + unsaved_note(table)).strip()


def epoch_table_html(table: EpochTable, images: Path) -> str:
    """The epoch table as an HTML table: thumbnails as column heads, one row per epoch."""
    heads = "".join(f'<th><img src="{thumbnail_uri(images / image)}" alt="{html.escape(image)}"><br>'
                    f"<small>{html.escape(image)}</small></th>" for image in table.images)
    body = "".join(
        f"<tr{' class=chosen' if row.chosen else ''}><td class=number>{row.title()}</td>"
        f"<td class=number>{bleu_text(row)}</td>"
        + "".join(f"<td>{html.escape(caption)}</td>" for caption in row.captions) + "</tr>"
        for row in table.rows)
    layout = "Each column is a test image, each row the model of an epoch."
    return (f"<p>{html.escape(legend(table, layout))}</p><div class=scroll><table class=epochs>"
            f"<tr><th>epoch</th><th>val BLEU-4</th>{heads}</tr>{body}</table></div>")


def render_samples_markdown(table: EpochTable) -> str:
    """The epoch table in Markdown, one section per test image, readable as plain text."""
    layout = "Each test image, with its caption by the model of every epoch."
    sections = ["# Captions by epoch", legend(table, layout)]
    for position, image in enumerate(table.images):
        lines = [f"## `{image}`", "", "| epoch | val BLEU-4 | caption |", "|---:|---:|---|"]
        for row in table.rows:
            lines.append(f"| {row.title()} | {bleu_text(row)} | {row.captions[position]} |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"
