"""The identity, as a member of the family: the "no adaptation" choice of a search."""

from numbers import Integral

import numpy as np
from sklearn.base import OneToOneFeatureMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._sklearn_compat import fit_context
from ._base import BaseDomainTransformer, _renamed, fill_doc

__all__ = ["NoAdaptation"]


@fill_doc
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
    domains_ : ndarray of shape (n_domains,), dtype=object
        Source labels seen in fit (sorted) followed by the target label(s).

    target_domain_ : str or int
        Domain of the samples without a label.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

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

    _parameter_constraints: dict = {"target_domain": [str, Integral, None]}

    def __init__(self, target_domain=None):
        self.target_domain = target_domain

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, sample_domain=None, domain=None):
        """Record the domains seen (to reject unknown labels in :meth:`transform`).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training features.

        y : Ignored
            Not used, present here for API consistency by convention.

        %(sample_domain_fit)s

        %(domain_deprecated)s

        Returns
        -------
        self : object
            Fitted transformer.
        """
        sample_domain = _renamed(sample_domain, domain)
        X = validate_data(self, X, accept_sparse=True, dtype=[np.float64, np.float32])
        self._fit_domains(sample_domain, X.shape[0])
        return self

    def transform(self, X, *, sample_domain=None, domain=None):
        """Return ``X`` unchanged, after checking its labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Features.

        %(sample_domain_transform)s

        %(domain_deprecated)s

        Returns
        -------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
            The validated input, same dtype.
        """
        sample_domain = _renamed(sample_domain, domain)
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse=True, dtype=[np.float64, np.float32])
        self._transform_domains(sample_domain, X.shape[0])
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
