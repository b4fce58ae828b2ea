"""Signed power ("signed square root") normalisation, Azizpour et al. section 5."""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from sklearn.preprocessing import normalize

from .._docstrings import FEATURE_ATTRIBUTES, fill_doc
from .._sklearn_compat import Interval, StrOptions
from ._base import FeatureTransformer

__all__ = ["SignedSqrt"]


@fill_doc(FEATURE_ATTRIBUTES)
class SignedSqrt(FeatureTransformer):
    """Normalise each sample, take a signed power, normalise again.

    Azizpour et al. (2015, section 5) post-process ConvNet features before a
    linear SVM as follows: "We then L2 normalize the ConvNet feature vector,
    raise the absolute value of each feature dimension to the power of 0.5 and
    keep its sign." Re-normalising the result to unit length, as is customary
    for power-normalised descriptors, makes every sample a unit vector again.
    For each sample ``x`` this transformer computes, in order:

    1. ``x = x / ||x||`` with the norm ``norm`` (skipped if ``norm=None``);
    2. ``x = sign(x) * |x| ** power`` (a no-op if ``power=1``);
    3. ``x = x / ||x||`` with the norm ``renorm`` (skipped if ``renorm=None``).

    Each step is switched off independently. Samples that are all zeros stay
    all zeros (no division by zero, no NaN). The transformer is stateless:
    :meth:`fit` only validates the parameters and records the number of
    features, and :meth:`transform` may be called without fitting.

    Parameters
    ----------
    power : float, default=0.5
        Exponent applied to the absolute value of each feature; must be
        positive. 0.5 is the signed square root, 1 switches the step off.

    norm : {"l2", "l1", "max"} or None, default="l2"
        Norm used to scale each sample before the power step (with
        :func:`sklearn.preprocessing.normalize`); None skips this step.

    renorm : {"l2", "l1", "max"} or None, default="l2"
        Norm used to scale each sample after the power step; None skips it.

    Attributes
    ----------
    %(features_in)s

    See Also
    --------
    sklearn.preprocessing.Normalizer : The normalisation steps alone.
    FeatureDropout : Dropout on features, another post-processing step.

    Notes
    -----
    Because ``0 ** power == 0`` for positive ``power``, the transformation
    keeps sparsity: sparse CSR input gives sparse CSR output with the same
    non-zero pattern.

    References
    ----------
    .. [1] H. Azizpour, A. Sharif Razavian, J. Sullivan, A. Maki and
       S. Carlsson. "From Generic to Specific Deep Representations for Visual
       Recognition". CVPR Workshops 2015, section 5.
    .. [2] F. Perronnin, J. Sanchez and T. Mensink. "Improving the Fisher
       kernel for large-scale image classification". ECCV 2010 (power
       normalisation).

    Examples
    --------
    >>> import numpy as np
    >>> from sk_decaf.transformers import SignedSqrt
    >>> X = np.array([[9.0, -16.0], [0.0, 0.0]])
    >>> SignedSqrt(norm=None, renorm=None).fit_transform(X)
    array([[ 3., -4.],
           [ 0.,  0.]])
    >>> SignedSqrt(norm=None).fit_transform(X)
    array([[ 0.6, -0.8],
           [ 0. ,  0. ]])
    """

    _parameter_constraints: dict = {
        "power": [Interval(Real, 0, None, closed="neither")],
        "norm": [StrOptions({"l1", "l2", "max"}), None],
        "renorm": [StrOptions({"l1", "l2", "max"}), None],
    }

    def __init__(self, *, power: float = 0.5, norm: str | None = "l2", renorm: str | None = "l2") -> None:
        self.power = power
        self.norm = norm
        self.renorm = renorm

    def transform(self, X: ArrayLike | sp.spmatrix) -> np.ndarray | sp.spmatrix:
        """Apply normalisation, signed power and re-normalisation.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Features to transform.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_features)
            Transformed features, same dtype and sparsity as ``X``; ``X`` is
            not modified.
        """
        X = self._validate(X, reset=False, copy=True)
        if self.norm is not None:
            X = normalize(X, norm=self.norm, copy=False)
        if self.power != 1:
            values = X.data if sp.issparse(X) else X
            # In place on the private copy; 0 ** power == 0 keeps zero rows.
            np.copysign(np.abs(values) ** self.power, values, out=values)
        if self.renorm is not None:
            X = normalize(X, norm=self.renorm, copy=False)
        return X

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
