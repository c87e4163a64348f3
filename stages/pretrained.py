"""Stage pretrained: brings the word vectors (embed.source) and CNN weights
(extract_features.weights) into data/pretrained/, tracked by their content. A local file must lie in
the project's pretrained/ folder, which the stage depends on; one elsewhere, which DVC would not see
change, is refused in one line giving the command that brings it there (see captioner.acquire.pinning
for the rule, and for what DVC does and does not see change).
"""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

from captioner.acquire.pinning import bring, refuse_outside
from captioner.core import params
from captioner.core.errors import run_stage
from captioner.core.files import write_json
from captioner.core.paths import PRETRAINED_RECORD, PRETRAINED_SCRATCH, PRETRAINED_SOURCES
from captioner.core.placed import VECTORS, WEIGHTS


def main() -> None:
    embed = params.load(params.EmbedParams)
    features = params.load(params.ExtractFeaturesParams)
    sources = ((VECTORS, embed.source, embed.sha256),
               (WEIGHTS, features.weights, features.weights_sha256))
    for kind, source, _ in sources:  # both, before either folder is touched
        refuse_outside(kind, source, PRETRAINED_SOURCES)
    metrics = {}
    for kind, source, sha256 in sources:
        record, action = bring(kind, source, sha256, PRETRAINED_SCRATCH, PRETRAINED_SOURCES)
        detail = f" (sha256 {record['sha256']})" if "sha256" in record else ""
        print(f"pretrained: {kind.stem} {action}: {source}{detail}")
        if "sha256" in record and not sha256:
            print(f"pretrained: {source} is not pinned; to pin it, set {kind.sha256_setting}: "
                  f"{record['sha256']}")
        metrics[kind.stem] = record
    write_json(PRETRAINED_RECORD, metrics)


if __name__ == "__main__":
    run_stage(main)
