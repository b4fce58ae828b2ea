"""DeCAF's evaluation protocols scored by mean per-class accuracy, few-shot curves, Office shifts, time per layer."""

from ._base import EvaluationResult, FewShotCurve, OfficeResults
from ._office import evaluate_office
from ._profile import profile_layers
from ._protocols import evaluate, few_shot_curve

__all__ = [
    "EvaluationResult",
    "FewShotCurve",
    "OfficeResults",
    "evaluate",
    "evaluate_office",
    "few_shot_curve",
    "profile_layers",
]
