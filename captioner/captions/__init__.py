"""The tokenize stage's work: caption formats read, captions gathered onto images, splits and vocabulary."""
