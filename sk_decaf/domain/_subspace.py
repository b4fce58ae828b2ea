"""Base of the subspace methods: one PCA basis per domain, then the alignment each member computes.

:class:`SubspaceAlignment` and :class:`GeodesicFlowKernel` share their ``fit`` up to the bases ``Ps``
and ``Pt`` of the source and target domains; each fills ``_fit_alignment(Ps, Pt)`` with what it
learns from them and ``_transform_rows`` with how it maps rows.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin
from sklearn.decomposition import PCA

from .._sklearn_compat import Interval
from ._base import BaseDomainTransformer

#: Docstring fragments of the subspace methods (``%(name)s`` markers, for ``fill_doc``).
SUBSPACE_DOCS = {
    "n_components": """n_components : int, default=None
        Dimension ``d`` of both subspaces. None takes the largest value both
        PCAs support: ``min(n_source_samples, n_target_samples, n_features)``.
        The papers pick ``d`` with a stability bound (SA) or the subspace
        disagreement measure (GFK); tune it by cross-validation here.""",
    "components": """components_source_ : ndarray of shape (n_components_, n_features)
        Source basis ``Ps.T`` (principal axes of the source rows).

    components_target_ : ndarray of shape (n_components_, n_features)
        Target basis ``Pt.T``.""",
}


class _BaseSubspace(ClassNamePrefixFeaturesOutMixin, BaseDomainTransformer):
    """Fit a ``d``-dimensional PCA basis per domain and hand both to ``_fit_alignment``.

    Sets ``mean_source_``, ``mean_target_``, ``components_source_``, ``components_target_`` and
    ``n_components_``. Without source rows the source basis is the target one.
    """

    _parameter_constraints: dict = {
        **BaseDomainTransformer._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
    }

    n_components: int | None

    def _fit_rows(self, X: Any, labels: np.ndarray, is_target: np.ndarray) -> None:
        X_source, X_target = self._split_source_target(X, is_target)
        limit = min(X_target.shape[0], X.shape[1])
        if X_source.shape[0]:
            limit = min(limit, X_source.shape[0])
        d = limit if self.n_components is None else self.n_components
        if d > limit:
            raise ValueError(
                f"n_components={self.n_components} must be <= min(n_source_samples, n_target_samples, n_features) "
                f"= {limit}."
            )
        basis_target = _pca_basis(X_target, d)
        basis_source = _pca_basis(X_source, d) if X_source.shape[0] else basis_target
        self.components_source_ = basis_source.T
        self.components_target_ = basis_target.T
        self.n_components_ = d
        self._fit_alignment(basis_source, basis_target)

    def _fit_alignment(self, basis_source: np.ndarray, basis_target: np.ndarray) -> None:
        """Learn the member's map from the ``(n_features, d)`` orthonormal bases ``Ps`` and ``Pt``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _fit_alignment")


def _pca_basis(X: np.ndarray, n_components: int) -> np.ndarray:
    """``(n_features, n_components)`` orthonormal principal axes of the float64 rows ``X``."""
    if X.shape[0] == 1:
        # PCA divides by n_samples - 1; one sample has no principal axes, so
        # any orthonormal basis of the right size is as good as another.
        return np.eye(X.shape[1], n_components)
    return PCA(n_components=n_components, svd_solver="full").fit(X).components_.T
