"""Data: synthetic raw files, image/box geometry, input pipelines and pretraining tasks."""
