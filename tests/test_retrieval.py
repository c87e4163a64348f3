"""The retrieval baseline: nearest training images by cosine, the candidate caption that agrees
most with the others, and k chosen by validation CIDEr."""

from __future__ import annotations

import numpy as np

from captioner.model.splits import Split
from captioner.reporting.retrieval import RetrievalBaseline, choose_k

# Three kinds of picture, each with captions that mostly agree and one that does not.
CAPTIONS = {
    "dog": ["a dog runs on the grass", "a brown dog runs on the grass", "a dog runs on grass",
            "a dog is running", "a red car parked outside"],
    "beach": ["people walk on the beach", "two people walk on a sandy beach",
              "people walking on the beach", "a beach", "a dog runs on the grass"],
    "bike": ["a man rides a bike", "a man rides a bike down a hill", "a cyclist rides a bike",
             "a man on a bike", "people walk on the beach"],
}
KINDS = list(CAPTIONS)


def split(kinds: list[str], seed: int, shift: float = 0.0) -> Split:
    """One image per entry of `kinds`: features near that kind's direction, and its captions."""
    rng = np.random.default_rng(seed)
    features = np.stack([np.eye(8)[KINDS.index(kind)] + shift + rng.normal(0, 0.05, 8)
                         for kind in kinds]).astype(np.float32)
    records = [{"image": f"{seed}_{index}.jpg", "captions": CAPTIONS[kind]}
               for index, kind in enumerate(kinds)]
    return Split(records, features, [])


def test_an_image_gets_the_consensus_caption_of_its_nearest_training_images():
    baseline = RetrievalBaseline(split(KINDS * 4, seed=0))
    test = split(["dog", "beach", "bike"], seed=1)
    captions = baseline.caption(test.features, [1, 4])
    for k in (1, 4):
        assert captions[k] == ["a dog runs on the grass", "people walk on the beach",
                               "a man rides a bike"]


def test_neighbours_are_by_cosine_so_a_brighter_copy_finds_the_same_image():
    # The beach image lies nearer the query by Euclidean distance (4.5 against 9), the dog image
    # by direction: the cosine picks the dog.
    features = np.array([[1.0, 0.0], [8.0, 4.0]], np.float32)
    train = Split([{"image": f"{kind}.jpg", "captions": CAPTIONS[kind]} for kind in ("dog", "beach")],
                  features, [])
    baseline = RetrievalBaseline(train)
    assert baseline.caption(np.array([[10.0, 0.0]], np.float32), [1]) == {
        1: ["a dog runs on the grass"]}


def test_k_is_chosen_by_validation_cider_and_too_many_neighbours_lose():
    # Two training images of each kind: k = 2 takes both, k = 6 mixes in the other kinds.
    baseline = RetrievalBaseline(split(KINDS * 2, seed=0))
    choice = choose_k(baseline, split(KINDS * 3, seed=2), [6, 2, 1])
    assert set(choice.val_cider) == {1, 2, 6}
    assert choice.val_cider[6] < choice.val_cider[2]
    assert choice.k == max(sorted(choice.val_cider), key=choice.val_cider.get)


def test_a_tie_picks_the_smallest_k():
    baseline = RetrievalBaseline(split(KINDS * 2, seed=0))
    choice = choose_k(baseline, split(KINDS, seed=2), [2, 1])
    assert choice.val_cider[1] == choice.val_cider[2] and choice.k == 1
