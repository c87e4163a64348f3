"""Stage tokenize: cleans the captions, builds the vocabulary from training captions, encodes splits."""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from captioner import params
from captioner.errors import PipelineError, run_stage
from captioner.files import atomic_path, write_json, write_jsonl
from captioner.text import (
    SPLIT_FILES,
    TOKEN_FILE,
    UNK_ID,
    build_vocabulary,
    clean,
    encode,
    make_splits,
    parse_token_file,
    read_image_list,
)

IMAGES = Path("data/raw/images")
TEXT = Path("data/raw/text")
OUTPUT = Path("data/captions")
METRICS = Path("metrics/data.json")


def main() -> None:
    config = params.load(params.TokenizeParams)
    parsed = parse_token_file(TEXT / TOKEN_FILE)
    present = {path.name for path in IMAGES.glob("*.jpg")}
    if not present:
        raise PipelineError(f"{IMAGES}: no .jpg images found; run the download stage first")
    dropped = collections.Counter(parsed.dropped)
    dropped["image_missing"] = sum(
        len(texts) for image, texts in parsed.captions.items() if image not in present
    )
    for reason, line_number in parsed.first_dropped_line.items():
        print(f"warning: {TEXT / TOKEN_FILE}: skipped {parsed.dropped[reason]} lines ({reason}), "
              f"the first at line {line_number}", file=sys.stderr)
    lists = {name: read_image_list(TEXT / file) for name, file in SPLIT_FILES.items()}
    splits, report = make_splits(lists, present, parsed.captions, config.val_images, config.seed)

    cleaned = {image: [clean(text) for text in parsed.captions[image]]
               for ids in splits.values() for image in ids}
    vocabulary = build_vocabulary(
        (words for image in splits["train"] for words in cleaned[image]), config.min_count
    )
    word_ids = {word: index for index, word in enumerate(vocabulary)}
    encoded = {image: [encode(words, word_ids, config.max_length) for words in cleaned[image]]
               for image in cleaned}

    with atomic_path(OUTPUT) as folder:
        folder.mkdir()
        write_json(folder / "vocab.json", vocabulary)
        for name, ids in splits.items():
            write_jsonl(folder / f"{name}.jsonl", [
                {"image": image, "captions": parsed.captions[image], "tokens": encoded[image]}
                for image in ids
            ])
    train_tokens = [t for image in splits["train"] for ids in encoded[image] for t in ids[1:-1]]
    write_json(METRICS, {
        "splits": {name: {"images": len(ids), "captions": sum(len(encoded[i]) for i in ids)}
                   for name, ids in splits.items()},
        "dropped_captions": dict(sorted(dropped.items())),
        "dropped_first_line": dict(sorted(parsed.first_dropped_line.items())),
        **report,
        "vocab_size": len(vocabulary),
        "train_unknown_share": round(train_tokens.count(UNK_ID) / max(len(train_tokens), 1), 5),
        "truncated_captions": sum(len(words) + 2 > config.max_length
                                  for words_list in cleaned.values() for words in words_list),
    })
    print(f"tokenize: {', '.join(f'{n} {len(i)} images' for n, i in splits.items())}; "
          f"vocabulary {len(vocabulary)} words")


if __name__ == "__main__":
    run_stage(main)
