"""CORrelation ALignment (CORAL): re-colour source features with the target covariance."""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.base import OneToOneFeatureMixin

from .._sklearn_compat import Interval
from ._base import BaseDomainTransformer, fill_domain_doc

__all__ = ["CORAL"]


@fill_domain_doc
class CORAL(OneToOneFeatureMixin, BaseDomainTransformer):
    """Align the covariance of the source domain to that of the target domain.

    CORAL (Sun, Feng and Saenko, 2016) whitens the source features with the
    source covariance and re-colours them with the target covariance, so that
    a classifier trained on the transformed source data fits the target
    domain. With ``Cs = cov(X_source) + reg * I`` and
    ``Ct = cov(X_target) + reg * I`` (Algorithm 1 of the paper, ``reg=1``)::

        A = Cs^(-1/2) Ct^(1/2)      # symmetric matrix powers, via eigh
        source rows:  x -> x A      # (x - mean_s) A + mean_t if center=True
        target rows:  x -> x        # unchanged

    so that ``A.T @ Cs @ A == Ct``: the regularised covariances match exactly.

    %(routing)s
    Then ``pipe.fit(X, y, sample_domain=d)`` trains on aligned source plus target rows and
    ``pipe.predict(X_test)`` (no labels: target rows) leaves test rows as they are. Several source
    labels are pooled into one source domain; it is unsupervised (``y`` is not used).

    Parameters
    ----------
    %(target_domain)s

    reg : float, default=1.0
        Ridge ``reg * I`` added to both covariances; 1 is the paper's choice.
        It keeps the problem well posed when a domain has fewer samples than
        features (e.g. 3 labelled target images per class). With ``reg=0`` a
        singular source covariance is pseudo-inverted.

    center : bool, default=False
        If False, source rows map to ``x @ A`` exactly as in Algorithm 1 of the
        paper, which assumes features already normalised per domain (the
        paper's experiments z-score each domain). If True, source rows map to
        ``(x - mean_source_) @ A + mean_target_``, so the first moments match
        too; target rows are unchanged either way.

    Attributes
    ----------
    alignment_ : ndarray of shape (n_features, n_features)
        The matrix ``A`` applied to source rows (the identity when no source
        rows were seen in :meth:`fit`).

    %(domain_means)s

    %(domains)s

    %(features_in)s

    See Also
    --------
    SubspaceAlignment : Align the PCA subspaces of the two domains.
    GeodesicFlowKernel : Integrate over the subspaces between the two domains.
    DomainAugment : Daumé III's feature augmentation (DeCAF Table 1).

    Notes
    -----
    skada's ``CORALAdapter`` implements the same paper with another regulariser
    (Ledoit-Wolf shrinkage by default) and always centres both domains; see
    :doc:`/domain_adaptation` for the comparison. ``fit`` without
    ``sample_domain`` (as in scikit-learn's estimator checks) treats
    every row as target: there is nothing to align, ``alignment_`` is the
    identity and :meth:`transform` returns its input. ``fit`` needs at least
    one target row. Computation is in float64 (an SVD of each domain when it
    has fewer samples than features, else an ``eigh`` of its covariance); the
    output keeps the dtype of ``X``.

    References
    ----------
    .. [1] B. Sun, J. Feng and K. Saenko. "Return of Frustratingly Easy Domain
       Adaptation". AAAI 2016, Algorithm 1.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_decaf.domain import CORAL
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(scale=3.0, size=(100, 2)),
    ...                rng.normal(scale=0.5, size=(100, 2))])
    >>> sample_domain = ["amazon"] * 100 + ["webcam"] * 100
    >>> coral = CORAL(target_domain="webcam", reg=0.0)
    >>> X_new = coral.fit_transform(X, sample_domain=sample_domain)
    >>> bool(np.allclose(np.cov(X_new[:100].T), np.cov(X[100:].T)))
    True
    >>> bool(np.array_equal(coral.transform(X[100:]), X[100:]))  # target rows
    True
    """

    _parameter_constraints: dict = {
        **BaseDomainTransformer._parameter_constraints,
        "reg": [Interval(Real, 0, None, closed="left")],
        "center": ["boolean"],
    }

    def __init__(self, target_domain: str | int | None = None, *, reg: float = 1.0, center: bool = False) -> None:
        self.target_domain = target_domain
        self.reg = reg
        self.center = center

    def _fit_rows(self, X: Any, labels: np.ndarray, is_target: np.ndarray) -> None:
        X_source, X_target = self._split_source_target(X, is_target)
        if X_source.shape[0] == 0:  # nothing to align
            self.alignment_ = np.eye(X.shape[1])
            return
        whiten = _regularised_covariance_power(X_source, self.reg, -0.5)
        recolour = _regularised_covariance_power(X_target, self.reg, 0.5)
        self.alignment_ = whiten @ recolour

    def _transform_rows(self, X: Any, labels: np.ndarray, is_target: np.ndarray) -> Any:
        # Source rows through alignment_ (and the means if center), target rows copied unchanged.
        is_source = ~is_target
        X_new = np.array(X, copy=True)
        if is_source.any():
            X_source, offset = X[is_source].astype(np.float64), 0.0
            if self.center:
                X_source -= self.mean_source_
                offset = self.mean_target_
            X_new[is_source] = X_source @ self.alignment_ + offset
        return X_new


def _regularised_covariance_power(X: np.ndarray, reg: float, power: float) -> np.ndarray:
    """``(cov(X) + reg * I) ** power`` with the unbiased covariance (Matlab's ``cov``).

    With fewer samples than features and ``reg > 0`` the covariance has low
    rank ``r``: from the thin SVD ``cov = V diag(s^2) V^T`` the result is
    ``reg^p I + V diag((s^2 + reg)^p - reg^p) V^T``, exact and O(n^2 d)
    instead of an O(d^3) eigendecomposition.
    """
    n_samples, n_features = X.shape
    if reg > 0 and n_samples <= n_features:
        eye = np.eye(n_features) * reg**power
        if n_samples < 2:
            return eye
        centred = (X - X.mean(axis=0)) / np.sqrt(n_samples - 1)
        _, s, Vt = linalg.svd(centred, full_matrices=False)
        return eye + (Vt.T * ((s**2 + reg) ** power - reg**power)) @ Vt
    cov = np.atleast_2d(np.cov(X, rowvar=False)) if n_samples > 1 else np.zeros((n_features,) * 2)
    return _symmetric_power(cov + reg * np.eye(n_features), power)


def _symmetric_power(C: np.ndarray, power: float) -> np.ndarray:
    """``C ** power`` of a symmetric PSD matrix through its eigendecomposition.

    Eigenvalues below a relative tolerance count as zero, so a negative power
    is the power of the pseudo-inverse.
    """
    eigvals, eigvecs = linalg.eigh(C, driver="evd")
    tol = max(eigvals.max(initial=0.0), 0.0) * C.shape[0] * np.finfo(C.dtype).eps
    keep = eigvals > tol
    powered = np.zeros_like(eigvals)
    powered[keep] = eigvals[keep] ** power
    return (eigvecs * powered) @ eigvecs.T
