"""What the evaluation protocols share: their result objects, parameter constraints and descriptions.

:func:`~sk_decaf.evaluation.evaluate`, :func:`~sk_decaf.evaluation.few_shot_curve` and
:func:`~sk_decaf.evaluation.evaluate_office` each live in their own module and build on this one
(and on the runner, ``_runner.py``), never on each other. Their results are structured objects, so
that callers (the CLI, benchmarks) read fields instead of parsing text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any, TypeAlias

import numpy as np

from .._sklearn_compat import HasMethods, Interval, StrOptions
from ..model_selection import DomainAdaptationSplit, PerClassSplit

__all__ = ["Dataset", "EvaluationResult", "FewShotCurve", "OfficeResults", "PROTOCOL_DOCS"]

#: What the protocols take as ``dataset``: a loader's ``Bunch`` (a mapping with ``target`` and ``images``,
#: ``data`` or ``paths``, and optionally ``domain``), or a tuple ``(X, y)`` or ``(X, y, domain)``.
Dataset: TypeAlias = Mapping[str, Any] | Sequence[Any]

#: Parameter descriptions shared by evaluate, few_shot_curve and evaluate_office (see sk_decaf._docstrings).
PROTOCOL_DOCS = {
    "too_few": """too_few : {"raise", "skip", "shrink"}, default="raise"
        Policy for classes with too few images: raise, leave them out, or use what they have; see
        :class:`~sk_decaf.model_selection.PerClassSplit` and
        :class:`~sk_decaf.model_selection.DomainAdaptationSplit`.""",
    "precompute": """precompute : "auto" or bool, default="auto"
        Compute the first pipeline step once, on the images used by some split,
        then evaluate the rest of the pipeline (``pipeline[1:]``) on the features.
        True requires a pipeline whose first step is not tuned by the search; it
        assumes that step learns nothing from the data (a frozen featurizer).
        "auto" does it when the first step is a
        :class:`~sk_decaf.transformers.DeCAFTransformer`.""",
    "random_state": """random_state : int, RandomState instance or None, default=0
        Seed of the splits (and of the validation splits of a search).""",
    "n_jobs": """n_jobs : int, default=None
        Splits fitted in parallel (joblib).""",
}

#: Constraints shared by evaluate, few_shot_curve and evaluate_office.
COMMON_CONSTRAINTS = {
    "estimator": [HasMethods(["fit", "predict"])],
    "dataset": "no_validation",
    "n_splits": [Interval(Integral, 1, None, closed="left")],
    "too_few": [StrOptions({"raise", "skip", "shrink"})],
    "precompute": [StrOptions({"auto"}), "boolean"],
    "random_state": ["random_state"],
    "n_jobs": [Integral, None],
}


@dataclass(repr=False)
class EvaluationResult:
    """Scores of an estimator over the splits of a protocol.

    Attributes
    ----------
    scores : ndarray of shape (n_splits,)
        Mean per-class accuracy (``balanced_accuracy_score``) of each split.
    protocol : str
        Description of the protocol, for people.
    n_train, n_test : ndarray of shape (n_splits,)
        Number of training and test images of each split.
    best_params : list of dict or None
        ``best_params_`` of each split when the estimator is a search.
    estimators : list of estimators or None
        The fitted estimator of each split, with ``return_estimators=True``.
    splitter : cross-validator or None
        The splitter that drew the splits (e.g. a
        :class:`~sk_decaf.model_selection.DomainAdaptationSplit`): its parameters are the protocol,
        for programs.
    mean, std : float
        Mean and standard deviation (``ddof=0``) of `scores`.
    """

    scores: np.ndarray
    protocol: str
    n_train: np.ndarray
    n_test: np.ndarray
    best_params: list[dict[str, Any] | None] | None = None
    estimators: list[Any] | None = None
    splitter: object = None

    @property
    def mean(self) -> float:
        """Mean of ``scores``."""
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        """Standard deviation (``ddof=0``) of ``scores``."""
        return float(np.std(self.scores))

    def __repr__(self) -> str:
        return (
            f"{100 * self.mean:.2f} ± {100 * self.std:.2f} % mean per-class accuracy "
            f"over {len(self.scores)} splits ({self.protocol})"
        )


@dataclass(repr=False)
class FewShotCurve:
    """Mean per-class accuracy as a function of training images per class.

    Attributes
    ----------
    n_train : ndarray of shape (n_points,)
        Training images per class of each point.
    scores : ndarray of shape (n_points, n_splits)
        Mean per-class accuracy of each split.
    protocol : str
        Description of the protocol.
    mean, std : ndarray of shape (n_points,)
        Mean and standard deviation over the splits.
    """

    n_train: np.ndarray
    scores: np.ndarray
    protocol: str

    @property
    def mean(self) -> np.ndarray:
        """Mean over the splits of each point."""
        return self.scores.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        """Standard deviation (``ddof=0``) over the splits of each point."""
        return self.scores.std(axis=1)

    def __repr__(self) -> str:
        points = ", ".join(f"{n}: {100 * m:.1f}" for n, m in zip(self.n_train, self.mean))
        return f"FewShotCurve({points}; {self.protocol})"


class OfficeResults(dict[str, EvaluationResult]):
    """The results of :func:`~sk_decaf.evaluation.evaluate_office`: ``{setting: EvaluationResult}``.

    A dict in the order of the settings, plus the protocol that the settings share.

    Attributes
    ----------
    protocol : str
        Description of the protocol common to the settings (shift, images per class, splits) and
        the list of settings.
    source, target : str or int
        The domains of the shift.
    """

    def __init__(
        self, results: Mapping[str, EvaluationResult], *, protocol: str, source: str | int, target: str | int
    ) -> None:
        super().__init__(results)
        self.protocol = protocol
        self.source = source
        self.target = target

    def __repr__(self) -> str:
        rows = "; ".join(f"{s}: {100 * r.mean:.2f} ± {100 * r.std:.2f}" for s, r in self.items())
        return f"OfficeResults({rows} % mean per-class accuracy; {self.protocol})"


def result_from_run(out: tuple[Any, ...], description: str, splitter: object, keep: bool) -> EvaluationResult:
    """An :class:`EvaluationResult` from one entry of the runner's output."""
    scores, n_train, n_test, params, estimators = out
    params = params if any(p is not None for p in params) else None
    return EvaluationResult(scores, description, n_train, n_test, params, estimators if keep else None, splitter)


def describe(cv: object, *, setting: bool = True) -> str:
    """Human-readable description of a splitter; ``setting=False`` leaves out the office setting."""
    if isinstance(cv, PerClassSplit):
        test = "the rest" if cv.n_test is None else cv.n_test
        return f"{cv.n_train} train / {test} test images per class, {cv.n_splits} random splits"
    if isinstance(cv, DomainAdaptationSplit):
        shift = f"{cv.source} -> {cv.target}" + (f", setting {cv.setting}" if setting else "")
        return (
            f"{shift}: {cv.get_n_source_per_class()} source + {cv.n_target_per_class} target images "
            f"per class, rest of the target tested, {cv.n_splits} random splits"
        )
    return repr(cv)
