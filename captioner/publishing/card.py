"""The model card: what a published model is, what it was trained on, how it scores beside the
retrieval baseline and published Flickr8k results, and where it fails. Written into the artifact
folder as card.json (read back by captioner.inference.model_card for `serve`, `predict` and
`GET /model`) and README.md (for people).

Hand-written: no library writes a card from DVC's records; the Markdown is a few tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

CARD_MARKDOWN = "README.md"
HEADLINE_SCORES = ("bleu4", "meteor", "cider")
# A test image scoring under this CIDEr shares next to nothing with its references.
NEAR_ZERO_CIDER = 0.01
SCORE_NAMES = {"bleu4": "BLEU-4", "meteor": "METEOR", "cider": "CIDEr"}
# Published results on Flickr8k's test split (BENCHMARKS.md gives the sources and their caveats),
# shown beside a model tested on that split.
PUBLISHED_RESULTS = (
    {"model": "merge GRU, VGG-16 (Tanti, Gatt & Camilleri 2018, mean of 3 runs)",
     "bleu4": 0.178, "meteor": 0.193, "cider": 0.469},
    {"model": "Show, Attend and Tell, hard attention (Xu et al. 2015)",
     "bleu4": 0.213, "meteor": 0.203, "cider": None},
    {"model": "adaptive attention, frozen VGG-16 (public reimplementation, beam 3)",
     "bleu4": 0.205, "meteor": 0.199, "cider": 0.524},
    {"model": "adaptive attention, fine-tuned ResNet-152 (same, beam 5)",
     "bleu4": 0.235, "meteor": 0.209, "cider": 0.589},
)


def headline(scores: Mapping[str, Any], splits: Mapping[str, Mapping[str, int]], dataset: str,
             published: str) -> dict[str, Any]:
    """The card's first line: the test scores, the data and the date."""
    line = {**{name: scores[name] for name in HEADLINE_SCORES},
            "test_images": scores["test_images"],
            "data": f"{dataset}: trained on {splits['train']['images']:,} images, "
                    f"{splits['val']['images']:,} more for validation",
            "published": published}
    measured = ", ".join(f"{SCORE_NAMES[name]} {line[name]:.3f}" for name in HEADLINE_SCORES)
    text = f"{measured} on {line['test_images']:,} test images · {line['data']} · published {published}"
    return {**line, "text": text}


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        text = "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(value) for value in row) + " |" for row in rows), ""]


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card for people: README.md of the artifact folder."""
    model, data, scores, limits = card["model"], card["data"], card["scores"], card["limitations"]
    lines = [f"# {card['name']}: {model['description']}", "", card["headline"]["text"], ""]
    lines += ["## Model", "",
              f"- {model['backbone']['backbone']} features ({model['backbone']['weights']} weights), "
              + (f"decoded by an ensemble of {len(model['members'])} members averaging their "
                 "next-word probabilities:" if len(model["members"]) > 1 else "decoded by one model:")]
    lines += [f"  - member {member['member']}: {member['decoder']} decoder, seed {member['seed']}, "
              f"epoch {member['best_epoch']} chosen by {member['monitor']} ({member['best']:.4f})"
              for member in model["members"]]
    decoding = model["decoding"]
    lines += [f"- vocabulary of {model['vocabulary']:,} words; decoded with beam size "
              f"{decoding['beam_size']}, length penalty {decoding['length_penalty']:g}, at most "
              f"{decoding['max_length']} words", f"- model.keras MD5 {model['md5']}", ""]
    lines += ["## Data", ""]
    lines += _table(["source", "as given", "bytes", "sha256"],
                    [(name, entry["source"], f"{entry['bytes']:,}",
                      entry.get("sha256", "— (a folder)"))
                     for name, entry in data["sources"].items()])
    lines += _table(["split", "images", "captions"],
                    [(name, f"{split['images']:,}", f"{split['captions']:,}")
                     for name, split in data["splits"].items()])
    lines += [f"Word vectors: {data['vectors']['source']}; CNN weights: {data['weights']['source']}.",
              ""]
    lines += ["## Test scores", "", "coco-caption scores (PTB tokenizer, pycocoevalcap) on the "
              f"test split, {card['headline']['test_images']:,} images:", ""]
    rows = [("**this model**", *(scores["model"][name] for name in HEADLINE_SCORES))]
    rows += [(row["model"], *(row[name] for name in HEADLINE_SCORES)) for row in scores["published"]]
    baseline = scores["retrieval_baseline"]
    rows += [(f"retrieval baseline: the consensus caption of the {baseline['k']} nearest training "
              "images", *(baseline[name] for name in HEADLINE_SCORES))]
    lines += _table(["model", *(SCORE_NAMES[name] for name in HEADLINE_SCORES)], rows)
    diversity = card["diversity"]
    lines += [f"Diversity: {diversity['distinct_captions']:.1%} of the test captions are distinct; "
              f"they use {diversity['distinct_words']:,} different words.", ""]
    lines += ["## Limitations, measured", "",
              f"The test images it captions worst (CIDEr per image; "
              f"{limits['near_zero_cider_images']} of {card['headline']['test_images']:,} score "
              f"under {NEAR_ZERO_CIDER}):", ""]
    lines += _table(["image", "caption", "CIDEr", "two of its references"],
                    [(row["image"], row["caption"], row["cider"], " / ".join(row["references"]))
                     for row in limits["worst_captioned"]])
    lines += ["The captions it says most often on the test split:", ""]
    lines += _table(["caption", "test images"],
                    [(row["caption"], row["images"]) for row in limits["most_repeated"]])
    beams = limits["beam_scores"]
    lines += ["Photos unlike Flickr8k's (in the project's photos/ folder, with their licences):",
              ""]
    lines += _table(["photo", "shows", "caption", "beam score"],
                    [(row["file"], row["shows"], row["caption"], row["score"])
                     for row in limits["out_of_domain"]])
    photos = limits["out_of_domain"]
    confident = sum(row["score"] >= beams["test"]["q1"] for row in photos)
    lines += [f"Beam scores (log-probability per word) of the test captions: median "
              f"{beams['test']['median']:.3f}, quartiles {beams['test']['q1']:.3f} and "
              f"{beams['test']['q3']:.3f}. Of these {len(photos)} photos' captions, {confident} "
              "score at or above the test captions' lower quartile"
              + (": the score alone does not flag a photo unlike the training data." if confident
                 else "."), ""]
    lines += ["## Params", "", "```json", json.dumps(card["params"], indent=2), "```", ""]
    return "\n".join(lines)
