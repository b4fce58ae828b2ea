"""Subspace alignment of the source PCA basis onto the target PCA basis."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._docstrings import fill_doc
from ._base import fill_domain_doc
from ._subspace import SUBSPACE_DOCS, _BaseSubspace

__all__ = ["SubspaceAlignment"]


@fill_domain_doc
@fill_doc(SUBSPACE_DOCS)
class SubspaceAlignment(_BaseSubspace):
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
    %(n_components)s

    %(target_domain)s

    Attributes
    ----------
    %(components)s

    alignment_ : ndarray of shape (n_components_, n_components_)
        ``M = Ps.T @ Pt``.

    %(domain_means)s

    n_components_ : int
        Dimension of the subspaces and of the output.

    %(domains)s

    %(features_in)s

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

    def __init__(self, n_components: int | None = None, *, target_domain: str | int | None = None) -> None:
        self.n_components = n_components
        self.target_domain = target_domain

    def _fit_alignment(self, basis_source: np.ndarray, basis_target: np.ndarray) -> None:
        self.alignment_ = basis_source.T @ basis_target

    def _transform_rows(self, X: Any, labels: np.ndarray, is_target: np.ndarray) -> Any:
        # Source rows on the aligned source basis Ps M, target rows on Pt, both centred by their domain's mean.
        X_new = np.empty((X.shape[0], self.n_components_), dtype=X.dtype)
        X_new[is_target] = (X[is_target] - self.mean_target_) @ self.components_target_.T
        source_map = self.components_source_.T @ self.alignment_
        X_new[~is_target] = (X[~is_target] - self.mean_source_) @ source_map
        return X_new

    @property
    def _n_features_out(self) -> int:
        return self.n_components_
