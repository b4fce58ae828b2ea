"""Subspace alignment of the source PCA basis onto the target PCA basis."""

from numbers import Integral

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted, validate_data

from .._sklearn_compat import Interval, fit_context
from ._base import BaseDomainTransformer, _renamed, fill_doc

__all__ = ["SubspaceAlignment"]


@fill_doc
class SubspaceAlignment(ClassNamePrefixFeaturesOutMixin, BaseDomainTransformer):
    """Project both domains on PCA subspaces, the source one aligned to the target.

    Subspace alignment (Fernando et al., 2013, Algorithm 1) learns
    ``d``-dimensional PCA bases ``Ps`` and ``Pt`` (columns orthonormal, shape
    ``(n_features, d)``) of the source and the target domain and the alignment
    matrix ``M = Ps.T @ Pt`` that minimises ``||Ps M - Pt||_F``. Then::

        source rows:  x -> (x - mean_s) Ps M
        target rows:  x -> (x - mean_t) Pt

    both ``d``-dimensional, in the coordinates of the target subspace. Each
    domain is centred by its own mean, as the paper's features are z-scored
    per domain before PCA; scaling is left to the user.

    %(routing)s
    Several source labels are pooled into one source domain; it is unsupervised (``y`` is not
    used).

    Parameters
    ----------
    n_components : int, default=None
        Dimension ``d`` of both subspaces. None takes the largest value both
        PCAs support: ``min(n_source_samples, n_target_samples, n_features)``.
        The papers pick ``d`` with a stability bound (SA) or the subspace
        disagreement measure (GFK); tune it by cross-validation here.

    %(target_domain)s

    Attributes
    ----------
    components_source_ : ndarray of shape (n_components_, n_features)
        Source basis ``Ps.T`` (principal axes of the source rows).

    components_target_ : ndarray of shape (n_components_, n_features)
        Target basis ``Pt.T``.

    alignment_ : ndarray of shape (n_components_, n_components_)
        ``M = Ps.T @ Pt``.

    mean_source_ : ndarray of shape (n_features,)
        Mean of the source rows seen in fit (the target mean if none).

    mean_target_ : ndarray of shape (n_features,)
        Mean of the target rows seen in fit.

    n_components_ : int
        Dimension of the subspaces and of the output.

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
    CORAL : Align the full covariances instead of subspaces.
    GeodesicFlowKernel : Integrate over the subspaces between the two domains.
    sklearn.decomposition.PCA : Computes both bases.

    Notes
    -----
    This is the algorithm of skada's ``SubspaceAlignmentAdapter``, and the two give the same
    output on the same data (tested). It is not delegated to skada, an optional dependency:
    here readable labels and unlabelled target rows work, the default ``n_components`` is
    valid for both domains (skada's, ``min(n_samples, n_features)`` over both domains, fails
    when one domain is smaller), the PCAs are exact (``svd_solver="full"``) rather than
    randomized on large inputs, float32 stays float32, and the bases are shared with
    :class:`GeodesicFlowKernel`. ``fit`` without ``sample_domain`` (as in scikit-learn's
    estimator checks) treats
    every row as target: the source subspace is then the target one, ``M`` is
    the identity and every row is projected with the target PCA. ``fit``
    needs at least one target row. The PCAs use ``svd_solver="full"``, so the
    result is deterministic.

    References
    ----------
    .. [1] B. Fernando, A. Habrard, M. Sebban and T. Tuytelaars. "Unsupervised
       Visual Domain Adaptation Using Subspace Alignment". ICCV 2013.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_decaf.domain import SubspaceAlignment
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(40, 5))
    >>> sample_domain = ["amazon"] * 20 + ["webcam"] * 20
    >>> sa = SubspaceAlignment(2, target_domain="webcam")
    >>> sa.fit_transform(X, sample_domain=sample_domain).shape
    (40, 2)
    >>> sa.alignment_.shape
    (2, 2)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "target_domain": [str, Integral, None],
    }

    def __init__(self, n_components=None, *, target_domain=None):
        self.n_components = n_components
        self.target_domain = target_domain

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, sample_domain=None, domain=None):
        """Learn both PCA bases and the alignment matrix.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training features of both domains.

        y : Ignored
            Not used (skada's masked target labels, -1, are fine).

        %(sample_domain_fit)s

        %(domain_deprecated)s

        Returns
        -------
        self : object
            Fitted transformer.
        """
        sample_domain = _renamed(sample_domain, domain)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        subspaces = _fit_domain_subspaces(self, X, sample_domain, self.n_components)
        self.mean_source_, basis_source, self.mean_target_, basis_target = subspaces
        self.components_source_ = basis_source.T
        self.components_target_ = basis_target.T
        self.n_components_ = basis_target.shape[1]
        self.alignment_ = basis_source.T @ basis_target
        return self

    def transform(self, X, *, sample_domain=None, domain=None):
        """Project source rows on the aligned source basis, target rows on ``Pt``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features to transform.

        %(sample_domain_transform)s

        %(domain_deprecated)s

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components_)
            Projected features with the dtype of ``X``.
        """
        sample_domain = _renamed(sample_domain, domain)
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        _, is_target = self._transform_domains(sample_domain, X.shape[0])
        X_new = np.empty((X.shape[0], self.n_components_), dtype=X.dtype)
        X_new[is_target] = (X[is_target] - self.mean_target_) @ self.components_target_.T
        source_map = self.components_source_.T @ self.alignment_
        X_new[~is_target] = (X[~is_target] - self.mean_source_) @ source_map
        return X_new

    @property
    def _n_features_out(self):
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _fit_domain_subspaces(estimator, X, sample_domain, n_components):
    """Split ``X`` by domain and fit one PCA basis per domain; sets ``estimator.domains_``.

    Shared by :class:`SubspaceAlignment` and :class:`GeodesicFlowKernel`.

    Returns
    -------
    subspaces : tuple
        ``(mean_source, Ps, mean_target, Pt)`` in float64; ``Ps`` and ``Pt``
        have shape ``(n_features, d)`` with orthonormal columns. Without
        source rows the source statistics are the target ones.
    """
    _, is_target = estimator._fit_domains(sample_domain, X.shape[0])
    estimator._require_target(is_target)
    X = X.astype(np.float64, copy=False)
    X_target, X_source = X[is_target], X[~is_target]
    limit = min(X_target.shape[0], X.shape[1])
    if X_source.shape[0]:
        limit = min(limit, X_source.shape[0])
    d = limit if n_components is None else n_components
    if d > limit:
        raise ValueError(
            f"n_components={n_components} must be <= min(n_source_samples, n_target_samples, n_features) = {limit}."
        )
    mean_target, basis_target = _pca_basis(X_target, d)
    if X_source.shape[0] == 0:
        return mean_target, basis_target, mean_target, basis_target
    mean_source, basis_source = _pca_basis(X_source, d)
    return mean_source, basis_source, mean_target, basis_target


def _pca_basis(X, n_components):
    """Mean and ``(n_features, n_components)`` orthonormal principal axes."""
    if X.shape[0] == 1:
        # PCA divides by n_samples - 1; one sample has no principal axes, so
        # any orthonormal basis of the right size is as good as another.
        return X[0].copy(), np.eye(X.shape[1], n_components)
    pca = PCA(n_components=n_components, svd_solver="full").fit(X)
    return pca.mean_, pca.components_.T
