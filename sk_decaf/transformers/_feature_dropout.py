"""Dropout on extracted features, as in DeCAF section 4.1."""

from __future__ import annotations

from numbers import Real

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._docstrings import FEATURE_ATTRIBUTES, fill_doc
from .._sklearn_compat import Interval, fit_context
from ._base import FeatureTransformer

__all__ = ["FeatureDropout"]


@fill_doc(FEATURE_ATTRIBUTES)
class FeatureDropout(FeatureTransformer):
    """Zero a random fraction of the training features; scale features at test time.

    DeCAF (Donahue et al., 2014, section 4.1) regularises the linear classifier
    trained on its features with dropout: "At training time, this technique
    works by randomly setting half of the activations (here, our features) in a
    given layer to 0. At test time, all activations are multiplied by 0.5."
    This transformer does exactly that with a configurable rate ``p``:

    - :meth:`fit_transform` -- what a :class:`~sklearn.pipeline.Pipeline` calls
      on the training data -- sets every feature of every sample to 0
      independently with probability ``p`` (so on average a fraction ``p`` of
      each sample's features is dropped) and leaves the others unchanged;
    - :meth:`transform` -- what the pipeline calls at predict / score time --
      multiplies all features by ``1 - p``, their expected training value.

    **By design, fit_transform(X) differs from fit(X).transform(X)**: the
    first is the stochastic training-time view, the second the deterministic
    test-time view. Both are needed for a pipeline to train on dropped-out
    features and predict on scaled ones.

    Parameters
    ----------
    p : float, default=0.5
        Probability of zeroing each feature at training time, in ``[0, 1)``.
        DeCAF uses 0.5. ``p=0`` makes the transformer the identity.

    random_state : int, RandomState instance or None, default=None
        Controls the dropout masks drawn in :meth:`fit_transform`. Pass an int
        for the same masks on every call (reproducible results across calls),
        see :term:`Glossary <random_state>`.

    Attributes
    ----------
    %(features_in)s

    See Also
    --------
    SignedSqrt : Signed power normalisation of features.
    sklearn.preprocessing.Normalizer : Row-wise normalisation.

    Notes
    -----
    Sparse CSR input is supported: only stored entries can be dropped (zeros
    stay zero), which has the same distribution as dropping in the dense
    matrix, and the output is CSR.

    References
    ----------
    .. [1] J. Donahue, Y. Jia, O. Vinyals, J. Hoffman, N. Zhang, E. Tzeng and
       T. Darrell. "DeCAF: A Deep Convolutional Activation Feature for Generic
       Visual Recognition". ICML 2014, section 4.1.
    .. [2] G. Hinton, N. Srivastava, A. Krizhevsky, I. Sutskever and
       R. Salakhutdinov. "Improving neural networks by preventing
       co-adaptation of feature detectors". arXiv:1207.0580, 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_decaf.transformers import FeatureDropout
    >>> X = np.ones((2, 4))
    >>> dropout = FeatureDropout(p=0.5, random_state=0)
    >>> dropout.fit_transform(X)  # training time: random zeros
    array([[1., 1., 1., 1.],
           [0., 1., 0., 1.]])
    >>> dropout.transform(X)  # test time: scaled by 1 - p
    array([[0.5, 0.5, 0.5, 0.5],
           [0.5, 0.5, 0.5, 0.5]])
    """

    _parameter_constraints: dict = {
        "p": [Interval(Real, 0, 1, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, p: float = 0.5, *, random_state: int | np.random.RandomState | None = None) -> None:
        self.p = p
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X: ArrayLike | sp.spmatrix, y: object = None) -> np.ndarray | sp.spmatrix:
        """Fit, then zero each feature with probability ``p`` (training time).

        This is *not* ``fit(X).transform(X)``: the features that survive keep
        their value instead of being scaled by ``1 - p``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training features.

        y : Ignored
            Not used, present here for API consistency by convention.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_features)
            A copy of ``X`` with dropped features set to 0, same dtype.
        """
        X = self._validate(X, reset=True)
        rng = check_random_state(self.random_state)
        if sp.issparse(X):
            X = X.copy()
            X.data[rng.random_sample(X.data.shape[0]) < self.p] = 0
            X.eliminate_zeros()
            return X
        keep = rng.random_sample(X.shape) >= self.p
        return np.where(keep, X, X.dtype.type(0))

    def transform(self, X: ArrayLike | sp.spmatrix) -> np.ndarray | sp.spmatrix:
        """Multiply all features by ``1 - p`` (test time).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Features to scale.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_features)
            ``(1 - p) * X``, same dtype and sparsity as ``X``.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return X * (1.0 - self.p)
