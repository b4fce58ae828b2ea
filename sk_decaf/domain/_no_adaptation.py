"""The identity, as a member of the family: the "no adaptation" choice of a search."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import OneToOneFeatureMixin

from ._base import BaseDomainTransformer, fill_domain_doc

__all__ = ["NoAdaptation"]


@fill_domain_doc
class NoAdaptation(OneToOneFeatureMixin, BaseDomainTransformer):
    """Return the features unchanged, taking ``sample_domain`` like the adaptation methods.

    The baseline of a search over adaptation choices. scikit-learn's ``"passthrough"`` cannot
    play that part once the domains are routed: it consumes no metadata, so
    ``Pipeline.fit(X, y, sample_domain=d)`` with no other step requesting ``sample_domain`` raises
    ``TypeError``, and a search whose pipeline starts with ``"passthrough"`` routes the labels to
    none of its candidates. ``NoAdaptation`` requests them (and checks them, as the other members
    do), so ``{"adapt": [NoAdaptation(...), DomainAugment(...), CORAL(...)]}`` works.

    %(routing)s

    Parameters
    ----------
    %(target_domain)s

    Attributes
    ----------
    %(domains)s

    %(features_in)s

    See Also
    --------
    DomainAugment : Daumé III's feature augmentation.
    CORAL : Align the source covariance to the target one.

    Examples
    --------
    >>> import numpy as np
    >>> import sklearn
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn.svm import LinearSVC
    >>> from sk_decaf.domain import CORAL, DomainAugment, NoAdaptation
    >>> from sk_decaf.model_selection import DomainAdaptationSplit
    >>> rng = np.random.RandomState(0)
    >>> y = np.r_[np.repeat([0, 1], 25), np.repeat([0, 1], 10)]
    >>> sample_domain = np.repeat(["amazon", "webcam"], [50, 20])
    >>> X = rng.normal(size=(70, 4)) + 2 * y[:, None] + (sample_domain == "webcam")[:, None]
    >>> choices = [NoAdaptation("webcam"), DomainAugment("webcam"), CORAL("webcam")]
    >>> search = GridSearchCV(
    ...     Pipeline([("adapt", choices[0]), ("svm", LinearSVC())]), {"adapt": choices},
    ...     cv=DomainAdaptationSplit("amazon", "webcam", n_source_per_class=20, n_splits=2),
    ... )
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     search = search.fit(X, y, sample_domain=sample_domain)
    >>> search.cv_results_["mean_test_score"].shape
    (3,)
    """

    _accept_sparse = True

    def __init__(self, target_domain: str | int | None = None) -> None:
        self.target_domain = target_domain

    def _transform_rows(self, X: Any, labels: np.ndarray, is_target: np.ndarray) -> Any:
        return X  # the validated input: the labels are checked, the rows are not changed
