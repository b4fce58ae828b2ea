"""Shared machinery of the evaluation protocols.

Unpacks datasets, computes the features of a frozen first pipeline step once for
all the splits, gives searches the protocol's validation splits, and fits and
scores each split with the domains routed to the steps that request them.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np
from sklearn import config_context
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils.metadata_routing import get_routing_for_object
from sklearn.utils.parallel import Parallel, delayed

from .._sklearn_compat import BaseSearchCV, safe_indexing
from ..datasets import CroppedImages
from ..model_selection import DomainAdaptationSplit, PerClassSplit
from ._base import Dataset

#: ``{key: (outer splitter, [(train indices, test indices), ...])}``: the splits a protocol scores.
Jobs = dict[Any, tuple[Any, list[tuple[np.ndarray, np.ndarray]]]]


def _unpack(dataset: Dataset) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """(X, y, domain) from a Bunch or an (X, y[, domain]) tuple.

    X is the Bunch's ``images`` (lazy crops), else ``data``, else ``paths``.
    """
    if isinstance(dataset, Mapping):
        key = next((k for k in ("images", "data", "paths") if k in dataset), None)
        if key is None or "target" not in dataset:
            raise ValueError("dataset needs `target` and one of `images`, `data`, `paths`.")
        X, y, domain = dataset[key], dataset["target"], dataset.get("sample_domain", dataset.get("domain"))
    elif isinstance(dataset, (tuple, list)) and len(dataset) in (2, 3):
        X, y, domain = (*dataset, None)[:3]
    else:
        raise TypeError("dataset must be a Bunch or a tuple (X, y) or (X, y, domain).")
    labels = np.asarray(y)
    domains = None if domain is None else np.asarray(domain)
    if len(X) != len(labels) or (domains is not None and len(domains) != len(labels)):
        raise ValueError("X, target and domain must have the same length.")
    return X, labels, domains


def _take(X: Any, indices: np.ndarray) -> Any:
    """Rows of X; lazy sequences of crops stay lazy."""
    if isinstance(X, CroppedImages):
        return X[indices]
    return safe_indexing(X, indices)


def _is_frozen_featurizer(step: object) -> bool:
    try:
        from ..transformers import DeCAFTransformer
    except ImportError:  # the torch side is optional for evaluation
        return False
    return isinstance(step, DeCAFTransformer)


def _split_featurizer(estimator: BaseEstimator, precompute: str | bool) -> tuple[BaseEstimator | None, BaseEstimator]:
    """Split off the first pipeline step when its features can be computed once.

    Returns (featurizer, head) where head is the estimator without that step
    (a search keeps its parameter grid: pipeline slices keep step names), or
    (None, estimator) when nothing is split off.
    """
    if not precompute:
        return None, estimator
    search = isinstance(estimator, BaseSearchCV)
    pipe = estimator.estimator if search else estimator
    reason = None
    if not (isinstance(pipe, Pipeline) and len(pipe.steps) > 1):
        reason = "the estimator is not a Pipeline (or a search over one) of 2+ steps"
    else:
        name, first = pipe.steps[0]
        grids = getattr(estimator, "param_grid", None) or getattr(estimator, "param_distributions", None)
        grids = [grids] if isinstance(grids, Mapping) else grids or []
        keys = [k for grid in grids for k in grid]
        if any(k == name or k.startswith(name + "__") for k in keys):
            reason = f"the search tunes the first step {name!r}"
        elif first in (None, "passthrough"):
            reason = "the first step is passthrough"
    if reason is not None:
        if precompute is True:
            raise ValueError(f"precompute=True but {reason}.")
        return None, estimator
    if precompute == "auto" and not _is_frozen_featurizer(first):
        return None, estimator
    head = pipe[1:]
    return first, clone(estimator).set_params(estimator=head) if search else head


def _with_inner_cv(
    estimator: BaseEstimator, cv: object, random_state: int | np.random.RandomState | None
) -> BaseEstimator:
    """Give a search without an explicit `cv` the protocol's validation splits.

    PerClassSplit(n_train=n) → PerClassSplit(n - v, v, n_splits=1) with
    v = max(1, round(n / 6)): DeCAF's 25/5 for Caltech-101 and 42/8 for SUN-397.
    DomainAdaptationSplit → StratifiedKFold(3). Other splitters: left as is.
    """
    if not (isinstance(estimator, BaseSearchCV) and estimator.cv is None):
        return estimator
    if isinstance(cv, PerClassSplit):
        if cv.n_train < 2:
            raise ValueError(
                f"Cannot validate parameters with n_train={cv.n_train} image per "
                "class: set the search's cv explicitly or use fixed parameters."
            )
        v = max(1, round(cv.n_train / 6))
        too_few = "shrink" if cv.too_few == "shrink" else "raise"
        inner: Any = PerClassSplit(cv.n_train - v, v, n_splits=1, too_few=too_few, random_state=random_state)
    elif isinstance(cv, DomainAdaptationSplit):
        inner = StratifiedKFold(3, shuffle=True, random_state=random_state)
    else:
        return estimator
    return clone(estimator).set_params(cv=inner)


def _domain_routing(estimator: BaseEstimator, domain: np.ndarray | None) -> dict[str, str]:
    """{method: metadata name} for fit/predict when the estimator requests the domains.

    The name is ``sample_domain`` (sk_decaf.domain, skada), or ``domain``, its deprecated name.
    """
    if domain is None:
        return {}
    with config_context(enable_metadata_routing=True):
        routing = get_routing_for_object(estimator)
        return {
            method: name
            for method in ("fit", "predict")
            for name in ("domain", "sample_domain")  # sample_domain wins when both are requested
            if routing.consumes(method=method, params={name})
        }


def _fit_and_score(
    estimator: BaseEstimator,
    X: Any,
    y: np.ndarray,
    domain: np.ndarray | None,
    train: np.ndarray,
    test: np.ndarray,
    routed: dict[str, str],
    keep: bool,
) -> tuple[float, dict[str, Any] | None, BaseEstimator | None]:
    est = clone(estimator)
    fit_params, predict_params = {}, {}
    if domain is not None:  # routed is empty without domains
        fit_params = {routed["fit"]: domain[train]} if "fit" in routed else {}
        predict_params = {routed["predict"]: domain[test]} if "predict" in routed else {}
    est.fit(_take(X, train), y[train], **fit_params)
    y_pred = est.predict(_take(X, test), **predict_params)
    score = balanced_accuracy_score(y[test], y_pred)
    return score, getattr(est, "best_params_", None), est if keep else None


def _featurize_once(
    featurizer: BaseEstimator, X: Any, y: np.ndarray, domain: np.ndarray | None, jobs: Jobs
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Jobs]:
    """Featurize the images used by some split; re-index the splits to match."""
    used = np.unique(np.concatenate([np.r_[tr, te] for _, splits in jobs.values() for tr, te in splits]))
    features = clone(featurizer).fit_transform(_take(X, used), y[used])
    position = np.full(len(y), -1)
    position[used] = np.arange(len(used))
    jobs = {key: (cv, [(position[tr], position[te]) for tr, te in splits]) for key, (cv, splits) in jobs.items()}
    return features, y[used], None if domain is None else domain[used], jobs


def _run(
    estimator: BaseEstimator,
    X: Any,
    y: np.ndarray,
    domain: np.ndarray | None,
    jobs: Jobs,
    *,
    precompute: str | bool,
    random_state: int | np.random.RandomState | None,
    n_jobs: int | None,
    keep: bool = False,
) -> dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray, list[Any], list[Any]]]:
    """Score `estimator` on several sets of splits, featurizing images once.

    `jobs` maps a key to (outer splitter, list of (train, test)). Returns a dict
    mapping each key to (scores, n_train, n_test, best_params, estimators), one
    entry per split in each.
    """
    featurizer, head = _split_featurizer(estimator, precompute)
    if featurizer is not None:
        X, y, domain, jobs = _featurize_once(featurizer, X, y, domain, jobs)
    results = {}
    for key, (cv, splits) in jobs.items():
        est = _with_inner_cv(head, cv, random_state)
        routed = _domain_routing(est, domain)
        # Routing is switched on for this call only, when a step asks for domains.
        with config_context(enable_metadata_routing=True) if routed else nullcontext():
            out = Parallel(n_jobs=n_jobs)(
                delayed(_fit_and_score)(est, X, y, domain, tr, te, routed, keep) for tr, te in splits
            )
        scores, params, estimators = map(list, zip(*out))
        n_train, n_test = np.array([(len(tr), len(te)) for tr, te in splits]).T
        results[key] = (np.array(scores), n_train, n_test, params, estimators)
    return results
