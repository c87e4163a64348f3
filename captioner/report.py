"""A small HTML page of test images with their generated and reference captions."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any


def render_report(rows: list[dict[str, Any]], images: Path, scores: dict[str, float]) -> str:
    """HTML with each image embedded, its generated caption and its references."""
    header = " · ".join(f"{name} {value:.3f}" for name, value in scores.items())
    cards = []
    for row in rows:
        data = base64.b64encode((images / row["image"]).read_bytes()).decode("ascii")
        references = "".join(f"<li>{html.escape(text)}</li>" for text in row["references"])
        cards.append(
            f'<figure><img src="data:image/jpeg;base64,{data}" alt="{html.escape(row["image"])}">'
            f"<figcaption><b>{html.escape(row['caption'])}</b>"
            f"<ol>{references}</ol><small>{html.escape(row['image'])}</small></figcaption></figure>"
        )
    return (
        "<!doctype html><meta charset='utf-8'><title>Caption report</title>"
        "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;"
        "vertical-align:top;width:300px;margin:0 1em 2em 0}img{width:300px}"
        "ol{padding-left:1.2em;color:#555;font-size:.9em}</style>"
        f"<h1>Generated captions on test images</h1><p>{html.escape(header)}</p>"
        + "".join(cards)
    )
