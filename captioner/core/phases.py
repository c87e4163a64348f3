"""The train stage's training phases, by the names it records for every epoch (the `phase` column
of metrics/train/epochs.tsv), which the evaluate stage's epoch table reads back."""

CROSS_ENTROPY = "cross_entropy"
SELF_CRITICAL = "self_critical"
