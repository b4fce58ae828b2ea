"""Daumé III's "frustratingly easy" feature augmentation for domain adaptation."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from sklearn.utils.validation import check_is_fitted

from .._sklearn_compat import check_feature_names_in
from ._base import BaseDomainTransformer, fill_domain_doc

__all__ = ["DomainAugment"]


@fill_domain_doc
class DomainAugment(BaseDomainTransformer):
    """Copy the features into a shared block and one block per domain.

    Daumé III (2007) adapts any linear classifier across domains by feature
    augmentation: with a source and a target domain, a source sample ``x``
    becomes ``[x, x, 0]`` and a target sample ``[x, 0, x]``, so the classifier
    learns shared weights (first block) plus per-domain corrections. DeCAF
    (Donahue et al., 2014, Table 1) uses it on DeCAF features of the Office
    dataset. With K domains ``d_1, ..., d_K`` a sample of domain ``d`` becomes
    ``[x, x * [d == d_1], ..., x * [d == d_K]]``.

    %(routing)s

    It is a *supervised* method: the classifier must see labelled target samples to learn the
    target block (in ``skada.make_da_pipeline``, pass ``mask_target_labels=False``).

    Parameters
    ----------
    %(target_domain)s

    domains : array-like of str or int, default=None
        Fixes the set and order of the per-domain blocks (it must contain
        ``target_domain``). If None, the domains are those seen in :meth:`fit`
        plus the target, ordered as described in ``domains_``.

    Attributes
    ----------
    domains_ : ndarray of shape (n_domains,), dtype=object
        Domains with a block in the output, in block order: ``domains`` if
        given, else the source labels seen in fit in sorted order followed
        by the target label(s) (the two-domain layout is then
        ``[shared, source, target]``).

    target_domain_ : str or int
        Domain of the samples without a label: ``target_domain``, or the
        target label seen in fit (skada's -1 if none).

    %(features_in)s

    See Also
    --------
    CORAL : Align the source covariance to the target one.
    sk_decaf.model_selection.DomainAdaptationSplit : The Office protocol's splits.

    Notes
    -----
    The output has ``n_features_in_ * (1 + len(domains_))`` columns. Sparse
    input gives sparse CSR output. ``transform`` without domain labels gives
    every sample the target layout ``[x, 0, ..., 0, x]``.

    References
    ----------
    .. [1] H. Daumé III. "Frustratingly Easy Domain Adaptation". ACL 2007.
    .. [2] J. Donahue, Y. Jia, O. Vinyals, J. Hoffman, N. Zhang, E. Tzeng and
       T. Darrell. "DeCAF: A Deep Convolutional Activation Feature for Generic
       Visual Recognition". ICML 2014, section 4.2 and Table 1.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_decaf.domain import DomainAugment
    >>> X = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> aug = DomainAugment(target_domain="webcam")
    >>> aug.fit_transform(X, sample_domain=["amazon", "webcam"])
    array([[1., 2., 1., 2., 0., 0.],
           [3., 4., 0., 0., 3., 4.]])
    >>> aug.domains_
    array(['amazon', 'webcam'], dtype=object)
    >>> aug.transform(X)  # no sample_domain: target domain
    array([[1., 2., 0., 0., 1., 2.],
           [3., 4., 0., 0., 3., 4.]])
    >>> aug.get_feature_names_out()
    array(['shared__x0', 'shared__x1', 'amazon__x0', 'amazon__x1',
           'webcam__x0', 'webcam__x1'], dtype=object)
    >>> DomainAugment().fit(X, sample_domain=[1, -2]).domains_  # skada's labels
    array([1, -2], dtype=object)
    """

    _parameter_constraints: dict = {**BaseDomainTransformer._parameter_constraints, "domains": ["array-like", None]}
    _accept_sparse = "csr"

    def __init__(self, target_domain: str | int | None = None, *, domains: ArrayLike | None = None) -> None:
        self.target_domain = target_domain
        self.domains = domains

    def _domain_order(self) -> ArrayLike | None:
        return self.domains

    def _transform_rows(self, X: Any, labels: np.ndarray, is_target: np.ndarray) -> Any:
        # [x, x * [d == domains_[0]], x * [d == domains_[1]], ...]; sparse CSR stays sparse CSR.
        blocks = [X] + [_keep_rows(X, labels == d) for d in self.domains_]
        if sp.issparse(X):
            return sp.hstack(blocks, format="csr", dtype=X.dtype)
        return np.hstack(blocks)

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """Get output feature names: ``shared__<name>``, ``<domain>__<name>``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input feature names. If None, ``feature_names_in_`` is used if
            defined, else ``["x0", "x1", ...]``.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per output column, blocks in ``["shared", *domains_]``
            order.
        """
        check_is_fitted(self)
        names = check_feature_names_in(self, input_features)
        prefixes = ["shared"] + [str(d) for d in self.domains_]
        return np.asarray(
            [f"{prefix}__{name}" for prefix in prefixes for name in names],
            dtype=object,
        )


def _keep_rows(X: Any, mask: np.ndarray) -> Any:
    """Copy of ``X`` with the rows outside ``mask`` set to zero."""
    if sp.issparse(X):
        kept = X.copy()
        kept.data *= np.repeat(mask, np.diff(kept.indptr)).astype(X.dtype)
        kept.eliminate_zeros()
        return kept
    return np.where(mask[:, None], X, X.dtype.type(0))
