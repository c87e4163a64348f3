"""Stage pretrained: brings the word vectors (embed.source) and CNN weights
(extract_features.weights) into data/pretrained/, tracked by their content.

dvc.yaml runs it on every `dvc repro` (always_changed), because DVC cannot see a file outside the
project, or behind a URL, change; captioner.pinning makes a run that finds nothing changed cost a
stat or one conditional request. Its folders are uncached, persistent outputs, so DVC neither copies
gigabytes into its cache nor deletes them before a run; embed and extract_features depend on them.
"""

from __future__ import annotations

from captioner import params
from captioner.errors import run_stage
from captioner.files import write_json
from captioner.paths import PRETRAINED_METRICS, PRETRAINED_SCRATCH
from captioner.pinning import bring
from captioner.pretrained import VECTORS, WEIGHTS


def main() -> None:
    embed = params.load(params.EmbedParams)
    features = params.load(params.ExtractFeaturesParams)
    metrics = {}
    for kind, source, sha256 in ((VECTORS, embed.source, embed.sha256),
                                 (WEIGHTS, features.weights, "")):
        record, action = bring(kind, source, sha256, PRETRAINED_SCRATCH)
        detail = f" (sha256 {record['sha256']})" if "sha256" in record else ""
        print(f"pretrained: {kind.stem} {action}: {source}{detail}")
        metrics[kind.stem] = record
    write_json(PRETRAINED_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
