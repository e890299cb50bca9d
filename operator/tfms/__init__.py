"""tfms: TensorFlow models on Google Cloud Run."""

__version__ = "0.1.0"
