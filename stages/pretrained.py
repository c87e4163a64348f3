"""Stage pretrained: brings the word vectors (embed.source) and CNN weights
(extract_features.weights) into data/pretrained/, tracked by their content.

DVC runs it when its params or code change, never because a file changed at the same path or URL
(DVC hashes nothing outside the project): the folders keep the copy made when it last ran, which
dvc.lock names by hash and from which everything after it was built. embed.sha256 and
extract_features.weights_sha256 pin a file's content: a run that finds other content stops with
one error naming the file, and setting a new pin is how a changed file is taken. The folders are
cached persistent outputs: `dvc push` / `dvc pull` carry them, and DVC does not delete them before
a run, so that captioner.acquire.pinning can keep a file it already holds instead of fetching it again.
"""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

from captioner.acquire.pinning import bring
from captioner.core import params
from captioner.core.errors import run_stage
from captioner.core.files import write_json
from captioner.core.paths import PRETRAINED_RECORD, PRETRAINED_SCRATCH
from captioner.core.placed import VECTORS, WEIGHTS


def main() -> None:
    embed = params.load(params.EmbedParams)
    features = params.load(params.ExtractFeaturesParams)
    metrics = {}
    for kind, source, sha256 in ((VECTORS, embed.source, embed.sha256),
                                 (WEIGHTS, features.weights, features.weights_sha256)):
        record, action = bring(kind, source, sha256, PRETRAINED_SCRATCH)
        detail = f" (sha256 {record['sha256']})" if "sha256" in record else ""
        print(f"pretrained: {kind.stem} {action}: {source}{detail}")
        if "sha256" in record and not sha256:
            print(f"pretrained: {source} is not pinned; to pin it, set {kind.sha256_setting}: "
                  f"{record['sha256']}")
        metrics[kind.stem] = record
    write_json(PRETRAINED_RECORD, metrics)


if __name__ == "__main__":
    run_stage(main)
