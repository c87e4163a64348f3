"""Caption scores with the coco-caption scorers of pycocoevalcap (BLEU-1..4, CIDEr, ROUGE-L), and how
varied the captions are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from captioner.core.text import clean

Captions = dict[str, list[str]]


def _tokenized(
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> tuple[Captions, Captions]:
    """Both sides cleaned by the training rules (lowercase, letters only) and space-joined.

    This stands in for the Java PTB tokenizer that coco-caption normally runs first.
    """
    images = sorted(hypotheses)
    missing = [image for image in images if not references.get(image)]
    if missing:
        raise ValueError(f"no reference captions for {len(missing)} images, e.g. {missing[0]}")
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
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Scores one generated caption per image against all its references."""
    truth, result = _tokenized(hypotheses, references)
    return {**_bleu_and_cider(truth, result), "rouge_l": _rouge_l(truth, result)}


def validation_scores(
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Corpus BLEU-4 and CIDEr alone, for per-epoch validation."""
    scores = _bleu_and_cider(*_tokenized(hypotheses, references))
    return {"bleu4": scores["bleu4"], "cider": scores["cider"]}


def diversity(captions: Sequence[str]) -> dict[str, float | int]:
    """The share of captions that no other image got word for word, after cleaning, and the number of
    distinct words used: a captioner that says the same thing to every dog scores well and helps
    nobody."""
    cleaned = [" ".join(clean(caption)) for caption in captions]
    return {"distinct_captions": len(set(cleaned)) / max(len(cleaned), 1),
            "distinct_words": len({word for caption in cleaned for word in caption.split()})}
