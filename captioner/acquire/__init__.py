"""Bringing sources into the project: the download stage's datasets and the pretrained stage's files."""
