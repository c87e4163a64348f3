"""Caption scores with the coco-caption scorers of pycocoevalcap, and how varied the captions are.

The test split is scored by coco-caption's protocol (score_captions): the PTB tokenizer, then
BLEU-1..4, METEOR, ROUGE-L and CIDEr, the first two in Java. Validation during training keeps to
Python (validation_scores): the project's own cleaning stands in for the PTB tokenizer, and only
BLEU-4 and CIDEr are computed, in a fraction of a second per epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from captioner.core.text import clean
from captioner.model.java_scorers import meteor, ptb_tokenize

Captions = dict[str, list[str]]
# The key of the references among the texts tokenized together.
REFERENCES = "references"


def _check_references(hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> None:
    missing = [image for image in sorted(hypotheses) if not references.get(image)]
    if missing:
        raise ValueError(f"no reference captions for {len(missing)} images, e.g. {missing[0]}")


def _cleaned(
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> tuple[Captions, Captions]:
    """Both sides cleaned by the training rules (lowercase, letters only) and space-joined."""
    _check_references(hypotheses, references)
    images = sorted(hypotheses)
    truth = {image: [" ".join(clean(text)) for text in references[image]] for image in images}
    result = {image: [" ".join(clean(hypotheses[image]))] for image in images}
    return truth, result


def _rouge_l(truth: Captions, result: Captions) -> float:
    """Mean ROUGE-L; an empty caption scores 0 (pycocoevalcap divides by its length)."""
    scorer = Rouge()
    return float(np.mean([scorer.calc_score(result[image], truth[image]) if result[image][0]
                          else 0.0 for image in truth]))


def _bleu_and_cider(truth: Captions, result: Captions) -> dict[str, float]:
    bleu, _ = Bleu(4).compute_score(truth, result, verbose=0)
    cider, _ = Cider().compute_score(truth, result)
    scores = {f"bleu{n}": float(value) for n, value in enumerate(bleu, start=1)}
    return {**scores, "cider": float(cider)}


def score_captions(
    captioners: Mapping[str, Mapping[str, str]], references: Mapping[str, Sequence[str]],
    java_path: str,
) -> dict[str, dict[str, float]]:
    """Scores each captioner's captions (one per image; every captioner captions the same images)
    against all the images' references, as coco-caption does: PTB-tokenized, then BLEU-1..4,
    METEOR, ROUGE-L and CIDEr. One tokenizer run and one METEOR process serve them all."""
    images = sorted(next(iter(captioners.values())))
    for name, hypotheses in captioners.items():
        if sorted(hypotheses) != images:
            raise ValueError(f"{name} captions other images than {next(iter(captioners))}")
        _check_references(hypotheses, references)
    texts: dict[tuple[str, str], Sequence[str]] = {
        (REFERENCES, image): references[image] for image in images}
    texts.update({(name, image): [hypotheses[image]] for name, hypotheses in captioners.items()
                  for image in images})
    tokenized = ptb_tokenize(texts, java_path)
    truth = {image: tokenized[REFERENCES, image] for image in images}
    results = {name: {image: tokenized[name, image] for image in images} for name in captioners}
    meteors = meteor(truth, results, java_path)
    return {name: {**_bleu_and_cider(truth, result), "meteor": meteors[name],
                   "rouge_l": _rouge_l(truth, result)}
            for name, result in results.items()}


def validation_scores(
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Corpus BLEU-4 and CIDEr alone, for per-epoch validation."""
    scores = _bleu_and_cider(*_cleaned(hypotheses, references))
    return {"bleu4": scores["bleu4"], "cider": scores["cider"]}


def diversity(captions: Sequence[str]) -> dict[str, float | int]:
    """The number of different captions (word for word, after cleaning) over the number of captions,
    and the number of distinct words used: a captioner that says the same thing to every dog scores
    well and helps nobody."""
    cleaned = [" ".join(clean(caption)) for caption in captions]
    return {"distinct_captions": len(set(cleaned)) / max(len(cleaned), 1),
            "distinct_words": len({word for caption in cleaned for word in caption.split()})}
