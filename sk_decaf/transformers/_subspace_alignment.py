"""Subspace alignment of the source PCA basis onto the target PCA basis."""

from numbers import Integral

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.decomposition import PCA
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from ._domain import DomainTransformerMixin, check_domain, domain_mask, resolve_domains

__all__ = ["SubspaceAlignment"]


class SubspaceAlignment(DomainTransformerMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
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

    The domain of each sample is passed as the ``domain`` metadata of
    :meth:`fit` and :meth:`transform`. Rows whose domain is ``target_domain``
    (or None / NaN) are target rows; every other label is a source domain, and
    several source labels are pooled into one. Inside a
    :class:`~sklearn.pipeline.Pipeline` the labels travel through metadata
    routing, which must be enabled with
    ``sklearn.set_config(enable_metadata_routing=True)`` and requested with
    ``set_fit_request(domain=True).set_transform_request(domain=True)``.

    Parameters
    ----------
    n_components : int, default=None
        Dimension ``d`` of both subspaces. None takes the largest value both
        PCAs support: ``min(n_source_samples, n_target_samples, n_features)``.
        The papers pick ``d`` with a stability bound (SA) or the subspace
        disagreement measure (GFK); tune it by cross-validation here.

    target_domain : str or int, default="target"
        Label of the target domain, the domain of samples without a label.

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
        Source labels seen in fit (sorted) followed by ``target_domain``.

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
    ``fit`` without ``domain`` (as in scikit-learn's estimator checks) treats
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
    >>> from sk_decaf.transformers import SubspaceAlignment
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(40, 5))
    >>> domain = ["amazon"] * 20 + ["webcam"] * 20
    >>> sa = SubspaceAlignment(2, target_domain="webcam")
    >>> sa.fit_transform(X, domain=domain).shape
    (40, 2)
    >>> sa.alignment_.shape
    (2, 2)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "target_domain": [str, Integral],
    }

    def __init__(self, n_components=None, *, target_domain="target"):
        self.n_components = n_components
        self.target_domain = target_domain

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, domain=None):
        """Learn both PCA bases and the alignment matrix.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training features of both domains.

        y : Ignored
            Not used, present here for API consistency by convention.

        domain : array-like of shape (n_samples,), default=None
            Domain label of each sample; None (or None / NaN entries) means
            ``target_domain``. Routed by meta-estimators when metadata routing
            is enabled and requested with ``set_fit_request(domain=True)``.

        Returns
        -------
        self : object
            Fitted transformer.
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.domains_, subspaces = _fit_domain_subspaces(
            X, domain, self.target_domain, self.n_components
        )
        self.mean_source_, basis_source, self.mean_target_, basis_target = subspaces
        self.components_source_ = basis_source.T
        self.components_target_ = basis_target.T
        self.n_components_ = basis_target.shape[1]
        self.alignment_ = basis_source.T @ basis_target
        return self

    def transform(self, X, *, domain=None):
        """Project source rows on the aligned source basis, target rows on ``Pt``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features to transform.

        domain : array-like of shape (n_samples,), default=None
            Domain label of each sample, each one in ``domains_``; None (or
            None / NaN entries) means ``target_domain``. Routed by
            meta-estimators when metadata routing is enabled and requested
            with ``set_transform_request(domain=True)``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components_)
            Projected features with the dtype of ``X``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        is_target = self._target_mask(domain, X.shape[0])
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


def _fit_domain_subspaces(X, domain, target_domain, n_components):
    """Split ``X`` by domain and fit one PCA basis per domain.

    Shared by :class:`SubspaceAlignment` and :class:`GeodesicFlowKernel`.

    Returns
    -------
    domains : ndarray, dtype=object
        Fitted ``domains_`` (source labels, then ``target_domain``).
    subspaces : tuple
        ``(mean_source, Ps, mean_target, Pt)`` in float64; ``Ps`` and ``Pt``
        have shape ``(n_features, d)`` with orthonormal columns. Without
        source rows the source statistics are the target ones.
    """
    domain = check_domain(domain, X.shape[0], target_domain=target_domain)
    domains = resolve_domains(domain, target_domain)
    is_target = domain_mask(domain, target_domain)
    if not is_target.any():
        raise ValueError(
            f"No sample of target_domain={target_domain!r} in fit; domains seen: "
            f"{list(domains[:-1])!r}."
        )
    X = X.astype(np.float64, copy=False)
    X_target, X_source = X[is_target], X[~is_target]
    limit = min(X_target.shape[0], X.shape[1])
    if X_source.shape[0]:
        limit = min(limit, X_source.shape[0])
    d = limit if n_components is None else n_components
    if d > limit:
        raise ValueError(
            f"n_components={n_components} must be <= min(n_source_samples, "
            f"n_target_samples, n_features) = {limit}."
        )
    mean_target, basis_target = _pca_basis(X_target, d)
    if X_source.shape[0] == 0:
        return domains, (mean_target, basis_target, mean_target, basis_target)
    mean_source, basis_source = _pca_basis(X_source, d)
    return domains, (mean_source, basis_source, mean_target, basis_target)


def _pca_basis(X, n_components):
    """Mean and ``(n_features, n_components)`` orthonormal principal axes."""
    if X.shape[0] == 1:
        # PCA divides by n_samples - 1; one sample has no principal axes, so
        # any orthonormal basis of the right size is as good as another.
        return X[0].copy(), np.eye(X.shape[1], n_components)
    pca = PCA(n_components=n_components, svd_solver="full").fit(X)
    return pca.mean_, pca.components_.T
