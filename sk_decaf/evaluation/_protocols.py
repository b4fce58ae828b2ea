"""DeCAF's evaluation protocols: repeated splits scored by mean per-class accuracy."""

from __future__ import annotations

from numbers import Integral
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.utils.metadata_routing import get_routing_for_object

from .._docstrings import fill_doc
from .._sklearn_compat import HasMethods, Interval, StrOptions, validate_params
from ..model_selection import DomainAdaptationSplit, PerClassSplit
from ._base import (
    COMMON_CONSTRAINTS,
    PROTOCOL_DOCS,
    Dataset,
    EvaluationResult,
    FewShotCurve,
    describe,
    result_from_run,
)
from ._runner import _run, _unpack

#: Built-in protocols: (n_train, n_test) per class, as in DeCAF Sec. 4.1 and 4.4.
PROTOCOLS: dict[str, tuple[int, int | None]] = {"caltech101": (30, None), "sun397": (50, 50)}


def _resolve_protocol(
    protocol: Any,
    *,
    n_train: int | None,
    n_splits: int,
    too_few: str,
    random_state: int | np.random.RandomState | None,
    **office: Any,
) -> tuple[Any, str]:
    if hasattr(protocol, "split") and hasattr(protocol, "get_n_splits"):
        return protocol, describe(protocol)
    if protocol in PROTOCOLS or protocol == "per-class":
        if (protocol == "per-class") != (n_train is not None):
            raise ValueError("n_train is required by, and only by, protocol='per-class'.")
        n_tr, n_te = PROTOCOLS.get(protocol, (cast(int, n_train), None))  # n_train is set for per-class
        cv: Any = PerClassSplit(n_tr, n_te, n_splits=n_splits, too_few=too_few, random_state=random_state)
    elif protocol == "office":
        if office.get("source") is None or office.get("target") is None:
            raise ValueError("protocol='office' needs source= and target= domains.")
        cv = DomainAdaptationSplit(n_splits=n_splits, too_few=too_few, random_state=random_state, **office)
    else:  # unreachable through evaluate, which validates `protocol`
        raise ValueError(f"Unknown protocol {protocol!r}.")
    return cv, f"{protocol}: {describe(cv)}"


def _split_params(cv: object, domain: np.ndarray | None) -> dict[str, np.ndarray]:
    """The domains, under the name the splitter requests: sample_domain (ours, skada's) or groups."""
    if domain is None:
        return {}
    routing = get_routing_for_object(cv)
    for key in ("sample_domain", "groups"):
        if routing.consumes(method="split", params={key}):
            return {key: domain}
    return {}


@validate_params(
    {
        **COMMON_CONSTRAINTS,
        "protocol": [
            StrOptions({*PROTOCOLS, "per-class", "office"}),
            HasMethods(["split", "get_n_splits"]),
        ],
        "n_train": [Interval(Integral, 1, None, closed="left"), None],
        "source": [str, Integral, None],
        "target": [str, Integral, None],
        "setting": [StrOptions({"S", "T", "ST"})],
        "return_estimators": ["boolean"],
    },
    prefer_skip_nested_validation=False,
)
@fill_doc(PROTOCOL_DOCS)
def evaluate(
    estimator: BaseEstimator,
    dataset: Dataset,
    *,
    protocol: str | Any = "caltech101",
    n_train: int | None = None,
    n_splits: int = 5,
    source: str | int | None = None,
    target: str | int | None = None,
    setting: str = "ST",
    too_few: str = "raise",
    precompute: str | bool = "auto",
    random_state: int | np.random.RandomState | None = 0,
    n_jobs: int | None = None,
    return_estimators: bool = False,
) -> EvaluationResult:
    """Mean per-class accuracy of an estimator under a DeCAF protocol.

    For each split the estimator is cloned, fitted on the training images and
    scored with :func:`~sklearn.metrics.balanced_accuracy_score` (the mean
    per-class accuracy of DeCAF) on the test images.

    Parameters
    ----------
    estimator : estimator
        Classifier taking the dataset's images (or features) as X, typically
        ``make_pipeline(DeCAFTransformer(...), LinearSVC())`` or a search over one.
        A search (e.g. :class:`~sklearn.model_selection.GridSearchCV`) left with
        ``cv=None`` gets the protocol's validation splits inside each training
        set: ``PerClassSplit(n - v, v, n_splits=1)`` with ``v = round(n / 6)``
        for ``n`` training images per class (DeCAF's 25/5 for Caltech-101 and
        42/8 for SUN-397), ``StratifiedKFold(3)`` for "office". Set ``cv``
        yourself to keep it.
    dataset : Bunch or tuple
        A loader's Bunch (X is its ``images``, else ``data``, else ``paths``; y
        its ``target``; domains its ``domain``) or a tuple ``(X, y[, domain])``.
    protocol : str or splitter, default="caltech101"
        "caltech101": 30 training images per class, the rest for testing;
        "sun397": 50 train / 50 test per class; "per-class": ``n_train`` per
        class, the rest for testing; "office": :class:`DomainAdaptationSplit`
        from ``source`` to ``target`` (needs the domains); or any splitter
        object (it gets the domains as ``sample_domain`` or ``groups``, whichever
        it requests, e.g. skada's splitters or ``GroupKFold``).
    n_train : int, default=None
        Training images per class; only for ``protocol="per-class"``.
    n_splits : int, default=5
        Number of random splits of the named protocols.
    source, target : str or int, default=None
        Domains of the "office" protocol (names, or skada's integers).
    setting : {"S", "T", "ST"}, default="ST"
        Training set of the "office" protocol: source only, target only, or both.
        Steps that request ``sample_domain`` (the :mod:`sk_decaf.domain`
        transformers and skada's adapters do by default) receive the domain of
        each image in ``fit`` and ``predict``; routing is enabled for that call only.
    %(too_few)s
    %(precompute)s
    %(random_state)s
    %(n_jobs)s
    return_estimators : bool, default=False
        Keep the fitted estimator of each split.

    Returns
    -------
    result : EvaluationResult
        ``scores`` per split, ``mean``, ``std``, ``protocol`` description,
        ``n_train`` / ``n_test`` per split, ``best_params`` for searches, and
        the ``splitter`` that drew the splits.

    See Also
    --------
    few_shot_curve : Accuracy against the number of training images per class.
    evaluate_office : The Office protocol in the S, T and ST settings.

    References
    ----------
    .. [1] J. Donahue et al., "DeCAF: A Deep Convolutional Activation Feature for
       Generic Visual Recognition", ICML, 2014, Sec. 4.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sklearn.svm import LinearSVC
    >>> from sk_decaf import evaluate
    >>> X, y = make_blobs(n_samples=120, centers=3, cluster_std=0.5, random_state=1)
    >>> result = evaluate(LinearSVC(), (X, y), protocol="per-class", n_train=10)
    >>> result.scores.shape, round(result.mean, 2)
    ((5,), 1.0)
    """
    X, y, domain = _unpack(dataset)
    cv, description = _resolve_protocol(
        protocol,
        n_train=n_train,
        n_splits=n_splits,
        too_few=too_few,
        random_state=random_state,
        source=source,
        target=target,
        setting=setting,
    )
    if isinstance(cv, DomainAdaptationSplit) and domain is None:
        raise ValueError("The office protocol needs the domain of each image.")
    splits = list(cv.split(X, y, **_split_params(cv, domain)))
    out = _run(
        estimator,
        X,
        y,
        domain,
        {None: (cv, splits)},
        precompute=precompute,
        random_state=random_state,
        n_jobs=n_jobs,
        keep=return_estimators,
    )
    return result_from_run(out[None], description, cv, return_estimators)


@validate_params(
    {
        **COMMON_CONSTRAINTS,
        "n_train": ["array-like"],
        "n_test": [Interval(Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=False,
)
@fill_doc(PROTOCOL_DOCS)
def few_shot_curve(
    estimator: BaseEstimator,
    dataset: Dataset,
    *,
    n_train: ArrayLike = (1, 2, 3, 5, 10, 20, 30),
    n_test: int | None = None,
    n_splits: int = 5,
    too_few: str = "raise",
    precompute: str | bool = "auto",
    random_state: int | np.random.RandomState | None = 0,
    n_jobs: int | None = None,
) -> FewShotCurve:
    """Mean per-class accuracy against training images per class (DeCAF Fig. 4 right).

    Each point is :func:`evaluate` with ``protocol="per-class"``; the features of
    a frozen first step are computed once for all the points.

    Parameters
    ----------
    estimator : estimator
        Classifier, usually with fixed parameters as in DeCAF (a search needs at
        least 2 training images per class, or an explicit ``cv``).
    dataset : Bunch or tuple
        As in :func:`evaluate`.
    n_train : sequence of int, default=(1, 2, 3, 5, 10, 20, 30)
        Training images per class of each point.
    n_test : int or None, default=None
        Test images per class; None tests on all the others.
    n_splits : int, default=5
        Random splits per point.
    %(too_few)s
    %(precompute)s
    %(random_state)s
    %(n_jobs)s

    Returns
    -------
    curve : FewShotCurve
        ``n_train``, ``scores`` of shape (n_points, n_splits), ``mean``, ``std``;
        plot it with :func:`sk_decaf.plotting.plot_few_shot`.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sklearn.svm import LinearSVC
    >>> from sk_decaf.evaluation import few_shot_curve
    >>> X, y = make_blobs(n_samples=120, centers=3, random_state=0)
    >>> curve = few_shot_curve(LinearSVC(), (X, y), n_train=[1, 5, 10])
    >>> curve.scores.shape
    (3, 5)
    """
    X, y, domain = _unpack(dataset)
    points = [int(k) for k in np.unique(n_train)]
    jobs = {}
    for k in points:
        cv = PerClassSplit(k, n_test, n_splits=n_splits, too_few=too_few, random_state=random_state)
        jobs[k] = (cv, list(cv.split(X, y)))
    out = _run(
        estimator,
        X,
        y,
        domain,
        jobs,
        precompute=precompute,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    test = "the rest" if n_test is None else n_test
    description = f"per-class: {points} train / {test} test images per class, {n_splits} random splits"
    scores = np.vstack([out[k][0] for k in points])
    return FewShotCurve(np.array(points), scores, description)
