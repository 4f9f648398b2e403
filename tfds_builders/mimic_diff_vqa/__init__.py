"""`mimic_diff_vqa`: Medical-Diff-VQA questions on (main, reference) MIMIC-CXR-JPG image pairs."""

from tfds_builders.mimic_diff_vqa.mimic_diff_vqa import MimicDiffVqa
