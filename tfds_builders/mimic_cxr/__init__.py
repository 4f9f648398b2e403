"""`mimic_cxr`: MIMIC-CXR-JPG images with their reports and CheXpert labels."""

from tfds_builders.mimic_cxr.mimic_cxr import MimicCxr
