"""`chest_imagenome`: Chest ImaGenome silver scene graphs on MIMIC-CXR-JPG frontal images."""

from tfds_builders.chest_imagenome.chest_imagenome import ChestImagenome
