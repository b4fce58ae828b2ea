"""Geodesic flow kernel between the source and target PCA subspaces, as features."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from .._docstrings import fill_doc
from ._base import fill_domain_doc
from ._subspace import SUBSPACE_DOCS, _BaseSubspace

__all__ = ["GeodesicFlowKernel"]


@fill_domain_doc
@fill_doc(SUBSPACE_DOCS)
class GeodesicFlowKernel(_BaseSubspace):
    """Features whose dot product is the geodesic flow kernel (GFK).

    Gong et al. (2012) join the ``d``-dimensional PCA subspaces of the source
    (basis ``Ps``) and the target (``Pt``) by the geodesic ``Phi(t)``,
    ``0 <= t <= 1``, of the Grassmann manifold and project every sample on all
    subspaces along it. The inner product of the infinite-dimensional
    projections is ``x_i.T @ G @ x_j`` with the closed form (their eq. 6)::

        G = int_0^1 Phi(t) Phi(t).T dt
          = [Ps U1, Rs U2] [[L1, L2], [L2, L3]] [Ps U1, Rs U2].T

    where ``Ps.T Pt = U1 cos(Theta) V.T`` and ``Rs.T Pt = -U2 sin(Theta) V.T``
    (``Rs`` spans the complement of ``Ps``, ``Theta`` are the principal
    angles) and ``L1, L2, L3`` are diagonal with ``int cos^2(t theta)``,
    ``-int cos(t theta) sin(t theta)`` and ``int sin^2(t theta)`` over
    ``t in [0, 1]``. ``G`` has rank ``<= 2d``; this transformer factorises
    ``G = L @ L.T`` with ``L`` of shape ``(n_features, 2d)`` (``projection_``)
    and returns ``Z = X @ L``, so ``Z_i . Z_j == x_i.T @ G @ x_j`` and a linear
    classifier on ``Z`` (e.g. ``LinearSVC``) is a GFK kernel machine. Without
    ``Rs``: its columns ``Rs U2`` come from the component of ``Pt V``
    orthogonal to ``Ps``, so memory stays ``O(n_features * d)``.

    %(routing)s
    Several source labels are pooled into one source domain; it is unsupervised (``y`` is not
    used). The labels only matter for :meth:`transform` when ``center=True``.

    Parameters
    ----------
    %(n_components)s

    %(target_domain)s

    center : bool, default=False
        If False, ``Z = X @ L`` and ``Z_i . Z_j = x_i.T G x_j`` exactly as in
        the paper, which assumes features z-scored per domain. If True, each
        row is first centred by the mean of its own domain
        (``mean_source_`` or ``mean_target_``).

    Attributes
    ----------
    projection_ : ndarray of shape (n_features, 2 * n_components_)
        Factor ``L`` of ``G = L @ L.T``. The first ``n_components_`` columns
        lie mostly in the source subspace, the others in its complement (all
        zero for angles of zero).

    principal_angles_ : ndarray of shape (n_components_,)
        Principal angles between the subspaces in radians, ascending.

    %(components)s

    %(domain_means)s

    n_components_ : int
        Dimension of the subspaces; the output has twice as many columns.

    %(domains)s

    %(features_in)s

    See Also
    --------
    SubspaceAlignment : Align the source basis to the target basis.
    CORAL : Align the full covariances.

    Notes
    -----
    ``G`` here is the integral itself (as in the authors' code); the paper's
    eq. 6 prints ``L1 = 1 + sin(2 theta) / (2 theta)`` etc., twice these values,
    which only rescales the regularisation of a classifier. When both
    subspaces coincide (all angles zero) ``G = Pt @ Pt.T``, the projection on
    that subspace. ``fit`` without ``sample_domain`` (as in scikit-learn's estimator
    checks) treats every row as target, which gives exactly that case. ``fit``
    needs at least one target row.

    References
    ----------
    .. [1] B. Gong, Y. Shi, F. Sha and K. Grauman. "Geodesic Flow Kernel for
       Unsupervised Domain Adaptation". CVPR 2012, section 3.
    .. [2] J. Donahue et al. "DeCAF: A Deep Convolutional Activation Feature
       for Generic Visual Recognition". ICML 2014, Table 1 (GFK row).

    Examples
    --------
    >>> import numpy as np
    >>> from sk_decaf.domain import GeodesicFlowKernel
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(40, 6))
    >>> sample_domain = [1] * 20 + [-2] * 20  # skada's labels: >= 0 source, < 0 target
    >>> gfk = GeodesicFlowKernel(2).fit(X, sample_domain=sample_domain)
    >>> Z = gfk.transform(X)
    >>> Z.shape
    (40, 4)
    >>> G = gfk.projection_ @ gfk.projection_.T
    >>> bool(np.allclose(Z @ Z.T, X @ G @ X.T))
    True
    """

    _parameter_constraints: dict = {**_BaseSubspace._parameter_constraints, "center": ["boolean"]}

    def __init__(
        self, n_components: int | None = None, *, target_domain: str | int | None = None, center: bool = False
    ) -> None:
        self.n_components = n_components
        self.target_domain = target_domain
        self.center = center

    def _fit_alignment(self, basis_source: np.ndarray, basis_target: np.ndarray) -> None:
        self.projection_, self.principal_angles_ = _gfk_factor(basis_source, basis_target)

    def _transform_rows(self, X: Any, labels: np.ndarray, is_target: np.ndarray) -> Any:
        # Z = X @ L; with center=True each row first loses the mean of its own domain.
        X_centred = X
        if self.center:
            X_centred = X - np.where(is_target[:, None], self.mean_target_, self.mean_source_)
        return (X_centred @ self.projection_).astype(X.dtype, copy=False)

    @property
    def _n_features_out(self) -> int:
        return 2 * self.n_components_


def _gfk_factor(basis_source: np.ndarray, basis_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factor ``L`` with ``L @ L.T = G`` and the principal angles.

    Each principal angle ``theta`` contributes a 2x2 block
    ``[[l1, l2], [l2, l3]]`` acting on the unit vectors ``a`` (in the source
    subspace) and ``b`` (orthogonal to it) of the geodesic; its Cholesky
    factor gives the two columns ``sqrt(l1) a + l2 / sqrt(l1) b`` and
    ``sqrt(l3 - l2^2 / l1) b``.
    """
    U, cos_theta, Vt = linalg.svd(basis_source.T @ basis_target)
    return _gfk_factor_from_svd(basis_source, basis_target, U, cos_theta, Vt)


def _gfk_factor_from_svd(
    basis_source: np.ndarray, basis_target: np.ndarray, U: np.ndarray, cos_theta: np.ndarray, Vt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_gfk_factor` given the SVD ``U @ diag(cos_theta) @ Vt`` of ``basis_source.T @ basis_target``.

    Separate so that the cosines can be given as a LAPACK may return them (e.g. ``1 + eps`` for shared
    directions), whichever way this machine's LAPACK rounds.
    """
    # The SVD fixes each pair (u_i, v_i) up to a joint sign, which flips columns i and d + i of L:
    # pick the sign that makes the largest entry of each a_i positive, so that the output does not
    # depend on the LAPACK build (as sklearn's svd_flip does for PCA).
    a = basis_source @ U
    signs = np.sign(a[np.argmax(np.abs(a), axis=0), np.arange(a.shape[1])])
    signs[signs == 0] = 1.0
    a, Vt = a * signs, Vt * signs[:, None]
    target_dirs = basis_target @ Vt.T
    # Rs U2 sin(theta) = Ps Ps^T Pt V - Pt V: the part of Pt V outside Ps.
    c = a @ (a.T @ target_dirs) - target_dirs
    sin_theta = np.linalg.norm(c, axis=0)
    # Depending on the LAPACK, the SVD returns cosines of 1 + eps for shared directions: clipped, the
    # angles stay real (no arccos NaN), and atan2 keeps the small ones accurate.
    theta = np.arctan2(sin_theta, np.clip(cos_theta, 0.0, 1.0))
    b = np.divide(c, sin_theta, out=np.zeros_like(c), where=sin_theta > 0)

    # Integrals over t in [0, 1]; written with sinc / (x - sin x) so that they
    # stay accurate for theta -> 0 (identical subspaces).
    two_theta = 2 * theta
    l1 = 0.5 * (1 + np.sinc(two_theta / np.pi))
    l2 = -0.5 * np.sin(theta) * np.sinc(theta / np.pi)  # (cos 2t - 1) / (4 t)
    l3 = 0.5 * _one_minus_sinc(two_theta)
    schur = np.clip(l3 - l2**2 / l1, 0.0, None)
    first = a * np.sqrt(l1) + b * (l2 / np.sqrt(l1))
    second = b * np.sqrt(schur)
    return np.hstack([first, second]), theta


def _one_minus_sinc(x: np.ndarray) -> np.ndarray:
    """``1 - sin(x) / x``, with its Taylor series near 0 to avoid cancellation."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 1e-2
    safe = np.where(small, 1.0, x)
    series = x**2 / 6 - x**4 / 120 + x**6 / 5040
    return np.where(small, series, 1 - np.sin(safe) / safe)
