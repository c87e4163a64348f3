"""train.mirrored_views: each cross-entropy epoch sees each training image once, as it is or
mirrored (drawn from the epoch's seed), with all its captions, "left" and "right" swapped in the
mirrored ones; pooled vectors and memory-mapped regions alike; without it, the data is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from captioner.core.text import END_ID, START_ID
from captioner.model.splits import Regions
from captioner.training.data import MirroredView, caption_dataset

VOCABULARY = ["<pad>", "<unk>", "<start>", "<end>", "a", "dog", "left", "right", "turns"]
LEFT, RIGHT, TURNS = (VOCABULARY.index(word) for word in ("left", "right", "turns"))


def records(count: int) -> list[dict]:
    """Image i has two captions: "a dog turns left" and "a dog" + i one-word padding."""
    return [{"image": f"{i}.jpg",
             "tokens": [[START_ID, 4, 5, TURNS, LEFT, END_ID], [START_ID, 4, 5, *[5] * (i % 3), END_ID]]}
            for i in range(count)]


def seen(dataset) -> list[tuple[int, list[int]]]:
    """Each caption's image (by its feature value) and its words, in the order the batches give."""
    pairs = []
    for (images, _), targets in dataset:
        # Regions come once per image, its captions after it (training.data.image_batches).
        images = np.repeat(images.numpy(), len(targets) // len(images), axis=0)
        for image, target in zip(images, targets.numpy(), strict=True):
            pairs.append((int(round(float(np.asarray(image).reshape(-1)[0]))),
                          [int(word) for word in target if word]))
    return pairs


@pytest.mark.parametrize("regions", [False, True], ids=["pooled", "regions"])
def test_each_image_is_seen_once_an_epoch_as_it_is_or_mirrored_with_left_and_right_swapped(regions):
    count = 40
    photos = np.arange(count, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    mirrors = -photos - 1000
    if regions:  # two regions an image, memory-mapped as extract_features writes them
        photos, mirrors = (Regions(np.repeat(array[:, None], 2, axis=1).astype(np.float16),
                                   np.arange(count)) for array in (photos, mirrors))
    view = MirroredView.of(mirrors, VOCABULARY)
    pairs = seen(caption_dataset(records(count), photos, 8, shuffle_seed=5, mirrored=view))

    assert len(pairs) == 2 * count
    by_image: dict[int, set[int]] = {}
    for image, words in pairs:
        mirrored = image < -500
        number = -image - 1000 if mirrored else image
        by_image.setdefault(number, set()).add(mirrored)
        if TURNS in words:  # "a dog turns left", or "right" in the mirror
            assert words[words.index(TURNS) + 1] == (RIGHT if mirrored else LEFT)
    assert sorted(by_image) == list(range(count))
    assert all(len(views) == 1 for views in by_image.values()), "an image seen both ways in one epoch"
    flipped = sum(views == {True} for views in by_image.values())
    assert 10 <= flipped <= 30
    again = seen(caption_dataset(records(count), photos, 8, shuffle_seed=5, mirrored=view))
    assert again == pairs
    other = seen(caption_dataset(records(count), photos, 8, shuffle_seed=6, mirrored=view))
    assert {image for image, _ in other} != {image for image, _ in pairs}


def test_without_a_mirrored_view_or_a_seed_only_the_photos_are_seen():
    photos = np.arange(12, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    view = MirroredView.of(-photos - 1000, VOCABULARY)
    plain = seen(caption_dataset(records(12), photos, 4, shuffle_seed=3))
    assert all(image >= 0 for image, _ in plain)
    # Validation batches (no seed) show the photos, whatever view training has.
    assert seen(caption_dataset(records(12), photos, 4, mirrored=view)) == seen(
        caption_dataset(records(12), photos, 4))


def test_a_vocabulary_without_both_words_swaps_nothing():
    view = MirroredView.of(np.zeros((1, 3)), ["<pad>", "<unk>", "<start>", "<end>", "left"])
    np.testing.assert_array_equal(view.word_ids, np.arange(5))


def test_image_batches_give_each_image_s_regions_once_and_its_captions_after_it(tmp_path):
    count = 30
    grid = np.arange(count, dtype=np.float16)[:, None, None] * np.ones((1, 2, 3), np.float16)
    np.save(tmp_path / "grid.npy", grid)
    order = np.random.default_rng(0).permutation(count)
    regions = Regions(np.load(tmp_path / "grid.npy", mmap_mode="r"), order)
    samples = records(count)
    samples[3]["tokens"] = samples[3]["tokens"] + [[START_ID, 4, END_ID]]  # three: two are kept
    batches = list(caption_dataset(samples, regions, 8, shuffle_seed=2))
    images = []
    for (batch_regions, prefixes), targets in batches:
        rows = batch_regions.numpy()[:, 0, 0].astype(int).tolist()
        assert len(rows) <= 4 and len(prefixes) == len(targets) == 2 * len(rows)
        for position, row in enumerate(rows):
            record = int(np.flatnonzero(order == row)[0])
            expected = {tuple(ids[1:]) for ids in samples[record]["tokens"]}
            for target in targets.numpy()[2 * position:2 * position + 2]:
                assert tuple(int(word) for word in target if word) in expected
        images += rows
    assert sorted(images) == sorted(order.tolist())
    again = [rows.numpy().tolist() for (rows, _), _ in caption_dataset(samples, regions, 8,
                                                                       shuffle_seed=2)]
    assert again == [rows.numpy().tolist() for (rows, _), _ in batches]
