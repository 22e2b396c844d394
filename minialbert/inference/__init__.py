"""Inference: multi-task serving on one frozen base, and the inference benchmark."""

from .serving import MultiTaskModel
