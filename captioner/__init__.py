"""captioner: the library behind the DVC stages of the caption pipeline, one subpackage per step.

- `core`: what every step shares: paths, params, files, errors, text, sources, the quiet start.
- `acquire`: the `download` and `pretrained` stages' work: fetching, unpacking, placing files.
- `captions`: the `tokenize` stage's: caption formats, splits, vocabulary.
- `inputs`: the `embed` and `extract_features` stages': word vectors and CNN features.
- `model`: the captioner network, its decoding, saving and scoring.
- `training`: the `train` stage's: the training loop, self-critical training, ensembles, resuming.
- `reporting`: the `evaluate` stage's report, epoch table and sample plots.

Imports run one way: each subpackage uses those listed above it, never one below.
"""
