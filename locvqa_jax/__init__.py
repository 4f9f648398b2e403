"""Location-aware pretraining of chest X-ray encoders and medical difference VQA."""

__version__ = "0.1.0"
