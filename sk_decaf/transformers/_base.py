"""Base of the feature-wise post-processing steps: validate in ``fit``, one output per input feature."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import validate_data

from .._sklearn_compat import fit_context

__all__ = ["FeatureTransformer"]

_Self = TypeVar("_Self", bound="FeatureTransformer")


class FeatureTransformer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """A transformer of float features that keeps their number, names, dtype and sparsity (CSR).

    ``fit`` validates the parameters and records the number (and names) of the features; a subclass
    implements ``transform`` with :meth:`_validate`.
    """

    def _validate(self, X: ArrayLike | sp.spmatrix, *, reset: bool, copy: bool = False) -> Any:
        return validate_data(
            self, X, reset=reset, accept_sparse="csr", dtype=[np.float64, np.float32], copy=copy, force_writeable=copy
        )

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self: _Self, X: ArrayLike | sp.spmatrix, y: object = None) -> _Self:
        """Validate the parameters and record the number of features.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training features.

        y : Ignored
            Not used, present here for API consistency by convention.

        Returns
        -------
        self : object
            Fitted transformer.
        """
        self._validate(X, reset=True)
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
