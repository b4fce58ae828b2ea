"""The Office domain-adaptation protocol (Saenko et al. 2010; DeCAF Table 1)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from .._docstrings import fill_doc
from .._sklearn_compat import Interval, validate_params
from ..model_selection import DomainAdaptationSplit
from ._base import COMMON_CONSTRAINTS, PROTOCOL_DOCS, Dataset, OfficeResults, describe, result_from_run
from ._runner import _run, _unpack


@validate_params(
    {
        **COMMON_CONSTRAINTS,
        "source": [str, Integral],
        "target": [str, Integral],
        "settings": [list, tuple],
        "n_source_per_class": [Interval(Integral, 1, None, closed="left"), None],
        "n_target_per_class": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=False,
)
@fill_doc(PROTOCOL_DOCS)
def evaluate_office(
    estimator: BaseEstimator,
    dataset: Dataset,
    *,
    source: str | int,
    target: str | int,
    settings: Sequence[str] = ("S", "T", "ST"),
    n_source_per_class: int | None = None,
    n_target_per_class: int = 3,
    n_splits: int = 5,
    too_few: str = "raise",
    precompute: str | bool = "auto",
    random_state: int | np.random.RandomState | None = 0,
    n_jobs: int | None = None,
) -> OfficeResults:
    """Accuracy on a domain shift, training on source, target or both (DeCAF Table 1).

    Every setting uses the same random draws, hence the same test sets: the
    target images not drawn as labelled training images. Images are featurized
    once for all settings and splits (see ``precompute``).

    Parameters
    ----------
    estimator : estimator
        Classifier taking the dataset's images (or features) as X. For "ST with
        DomainAugment", pass a pipeline with a
        ``DomainAugment(target_domain=target)`` step: the :mod:`sk_decaf.domain`
        transformers (and skada's adapters) request ``sample_domain``, so each
        split routes the domain of each image to their ``fit`` and ``transform``,
        with metadata routing enabled for that call only.
    dataset : Bunch or tuple
        A Bunch with ``domain`` (e.g. from
        :func:`~sk_decaf.datasets.load_office31`) or a tuple ``(X, y, sample_domain)``.
    source, target : str or int
        Source and target domains, e.g. "amazon" and "webcam" (or skada's
        integers, with ``n_source_per_class`` set).
    settings : sequence of {"S", "T", "ST"}, default=("S", "T", "ST")
        Training sets to evaluate: source only, labelled target only, both.
    n_source_per_class : int or None, default=None
        Source images per class; None picks 20 (amazon, caltech10) or 8 (dslr,
        webcam).
    n_target_per_class : int, default=3
        Labelled target images per class.
    n_splits : int, default=5
        Number of random splits.
    %(too_few)s
    %(precompute)s
    %(random_state)s
    %(n_jobs)s

    Returns
    -------
    results : OfficeResults
        A dict ``{setting: EvaluationResult}`` in the order of ``settings``,
        whose ``protocol`` attribute describes what the settings share.

    See Also
    --------
    sk_decaf.model_selection.DomainAdaptationSplit : The splits used.

    References
    ----------
    .. [1] K. Saenko, B. Kulis, M. Fritz and T. Darrell, "Adapting visual category
       models to new domains", ECCV, 2010.
    .. [2] J. Donahue et al., "DeCAF", ICML, 2014, Sec. 4.2.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sk_decaf.evaluation import evaluate_office
    >>> rng = np.random.RandomState(0)
    >>> y = np.tile(np.repeat([0, 1], 30), 2)
    >>> domain = np.repeat(["amazon", "webcam"], 60)
    >>> X = rng.normal(size=(120, 5)) + 3 * y[:, None]
    >>> results = evaluate_office(
    ...     LogisticRegression(), (X, y, domain), source="amazon", target="webcam"
    ... )
    >>> list(results), results["ST"].scores.shape
    (['S', 'T', 'ST'], (5,))
    >>> results.protocol.split("; ")[-1]
    'settings S, T, ST'
    """
    X, y, domain = _unpack(dataset)
    if domain is None:
        raise ValueError("The office protocol needs the domain of each image.")
    if not isinstance(random_state, Integral):
        # One seed for all settings, so that they share their draws.
        random_state = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    jobs = {}
    for setting in settings:
        cv = DomainAdaptationSplit(
            source,
            target,
            setting=setting,
            n_source_per_class=n_source_per_class,
            n_target_per_class=n_target_per_class,
            n_splits=n_splits,
            too_few=too_few,
            random_state=random_state,
        )
        jobs[setting] = (cv, list(cv.split(X, y, sample_domain=domain)))
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
    results = {s: result_from_run(out[s], f"office: {describe(cv)}", cv, False) for s, (cv, _) in jobs.items()}
    shared = f"office: {describe(cv, setting=False)}; settings {', '.join(jobs)}"
    return OfficeResults(results, protocol=shared, source=source, target=target)
