"""The evaluate stage's outputs beyond the scores: the epoch table, the HTML report and sample plots."""
