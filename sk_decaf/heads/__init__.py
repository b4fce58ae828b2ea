"""Heads other than a plain classifier: fine-tuning the backbone end to end, instance retrieval and its metric."""

from ._finetune import FineTunedClassifier
from ._metrics import mean_average_precision
from ._retrieval import RetrievalIndex, spatial_windows

__all__ = [
    "FineTunedClassifier",
    "RetrievalIndex",
    "mean_average_precision",
    "spatial_windows",
]
