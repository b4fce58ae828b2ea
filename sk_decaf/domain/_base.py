"""Base class of the domain-adaptation transformers and the rules for ``sample_domain`` labels.

Every transformer of :mod:`sk_decaf.domain` receives the domain of each sample as the
``sample_domain`` metadata of ``fit``, ``transform`` and ``fit_transform``, the name and
conventions of skada [1]_. The rules, implemented once here:

* ``sample_domain`` is None or a 1-D array-like with one label per sample (a list, an ndarray,
  a pandas Series).
* Labels are either readable names (``"amazon"``, ``"webcam"``), the target being the one named by
  ``target_domain``, or skada's integers: ``>= 0`` for source domains, ``< 0`` for target domains
  (used when ``target_domain=None``, the default).
* A missing label -- ``sample_domain=None`` as a whole, or a None / NaN entry -- means *target*:
  new images at predict time are target images.
* A label that ``fit`` did not see is a ``ValueError`` in ``transform``, naming the known labels.

Metadata routing: each transformer requests ``sample_domain`` for ``fit`` and ``transform`` at class
level (as skada's ``BaseAdapter`` does), so once routing is enabled with
``sklearn.set_config(enable_metadata_routing=True)`` a ``Pipeline``, ``GridSearchCV`` or
``cross_validate`` passes it on with no ``set_*_request`` call.

The template: :class:`BaseDomainTransformer` owns ``fit``, ``transform`` and ``fit_transform``
(validation, the labels, the deprecated ``domain=`` keyword) and calls one hook per member,
``_fit_rows`` and ``_transform_rows``, which hold only what the member computes (as
scikit-learn's ``_BasePCA`` does for its decompositions).

References
----------
.. [1] T. Gnassounou, O. Kachaiev, R. Flamary et al. "SKADA: Scikit Adaptation",
   https://scikit-adaptation.github.io.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable
from numbers import Integral
from typing import Any, TypeAlias, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._docstrings import FEATURE_ATTRIBUTES, fill_doc
from .._sklearn_compat import fit_context

#: What ``fit`` and ``transform`` take: array-likes, and sparse matrices for the members that accept them.
MatrixLike: TypeAlias = Union[ArrayLike, sparse.spmatrix, "sparse.sparray"]
#: What ``transform`` returns: an ndarray, or a sparse matrix for sparse input where a member keeps it sparse.
Features: TypeAlias = Union[np.ndarray, sparse.spmatrix, "sparse.sparray"]

__all__ = ["BaseDomainTransformer"]

_Self = TypeVar("_Self", bound="BaseDomainTransformer")

#: Label of the target domain for unlabelled samples under skada's convention (skada uses -1 when
#: no ``sample_domain`` is given at all).
SKADA_TARGET = -1

#: Docstring fragments shared by the family, for :func:`sk_decaf._docstrings.fill_doc`: a ``%(name)s``
#: marker in a member's docstring is replaced by the text below (written for a class docstring).
DOMAIN_DOCS = {
    "target_domain": """target_domain : str, int or None, default=None
        Label of the target domain. None follows skada's convention for integer labels: ``>= 0``
        source, ``< 0`` target; readable labels (strings) need the name of the target here.
        Samples without a label are target samples either way.""",
    "routing": """The domain of each sample is the ``sample_domain`` metadata of :meth:`fit` and
    :meth:`transform`, requested by default: with metadata routing enabled
    (``sklearn.set_config(enable_metadata_routing=True)``) ``pipe.fit(X, y, sample_domain=d)``
    reaches this step inside a :class:`~sklearn.pipeline.Pipeline`, a
    :class:`~sklearn.model_selection.GridSearchCV` or a ``skada.make_da_pipeline``.""",
    "domain_means": """mean_source_ : ndarray of shape (n_features,)
        Mean of the source rows seen in :meth:`fit` (the target mean if none).

    mean_target_ : ndarray of shape (n_features,)
        Mean of the target rows seen in :meth:`fit`.""",
    "domains": """domains_ : ndarray of shape (n_domains,), dtype=object
        Source labels seen in fit (sorted) followed by the target label(s);
        :meth:`transform` rejects other labels.

    target_domain_ : str or int
        Domain of the samples without a label.""",
}

#: The decorator of every member: the family's fragments and ``%(features_in)s``.
fill_domain_doc = fill_doc({**DOMAIN_DOCS, **FEATURE_ATTRIBUTES})


def _python_scalar(label: Any) -> Any:
    """Python scalar of a label; None for None and NaN; integral floats (-2.0) as ints."""
    if isinstance(label, np.generic):
        label = label.item()
    if label is None:
        return None
    if isinstance(label, numbers.Real) and not isinstance(label, (numbers.Integral, bool)):
        if label != label:  # NaN
            return None
        if float(label).is_integer():
            return int(float(label))
    return label


def check_sample_domain(sample_domain: ArrayLike | None, n_samples: int) -> np.ndarray:
    """Per-sample labels as a 1-D object array, None where a label is missing.

    Parameters
    ----------
    sample_domain : array-like of shape (n_samples,) or None
        One domain label per sample.
    n_samples : int
        Number of rows of the data the labels belong to.

    Returns
    -------
    labels : ndarray of shape (n_samples,), dtype=object
        Python scalars (readable reprs and feature names), None for missing entries.
    """
    labels = np.empty(n_samples, dtype=object)
    if sample_domain is None:
        return labels
    values = np.asarray(sample_domain, dtype=object)
    if values.ndim != 1:
        raise ValueError(f"sample_domain must be a 1-D array-like of labels, got shape {values.shape}.")
    if values.shape[0] != n_samples:
        raise ValueError(
            f"sample_domain has {values.shape[0]} labels but X has {n_samples} samples; "
            "pass one domain label per sample."
        )
    labels[:] = [_python_scalar(v) for v in values]
    return labels


def is_target_label(label: object, target_domain: str | int | None) -> bool:
    """Whether a (non-missing) label is a target domain under the ``target_domain`` rule."""
    if target_domain is not None:
        return bool(label == target_domain)
    if not isinstance(label, numbers.Integral) or isinstance(label, bool):
        raise ValueError(
            f"Domain label {label!r} is not one of skada's integers (>= 0 source, < 0 target): "
            "pass target_domain=<name of the target domain> to use readable labels."
        )
    return bool(label < 0)


def _sorted_labels(labels: Iterable[Any]) -> list[Any]:
    try:
        return sorted(labels)
    except TypeError as exc:
        raise ValueError(
            f"Domain labels must be mutually comparable (all strings or all numbers), got {sorted(map(repr, labels))}."
        ) from exc


def _renamed(sample_domain: ArrayLike | None, domain: ArrayLike | None) -> ArrayLike | None:
    """``sample_domain``, or the deprecated ``domain`` with a FutureWarning.

    Called by the template methods only: the warning points past them and the scikit-learn wrapper
    around each (``fit_context``, ``set_output``), at the caller's line.
    """
    if domain is None:
        return sample_domain
    if sample_domain is not None:
        raise TypeError("Pass the domain labels once, as sample_domain (domain is its deprecated alias).")
    warnings.warn(
        "`domain` was renamed `sample_domain` (skada's name) in sk_decaf 0.2 and will be removed in "
        "0.4: pass sample_domain=... (routing requests it by default, no set_*_request needed).",
        FutureWarning,
        stacklevel=4,
    )
    return domain


class BaseDomainTransformer(TransformerMixin, BaseEstimator):
    """Base class of the transformers that take per-sample domain labels (``sample_domain``).

    It requests ``sample_domain`` for ``fit`` and ``transform`` at class level and implements the
    label rules of the module docstring once, in template methods: :meth:`fit` validates ``X``,
    reads the labels and calls the member's ``_fit_rows(X, labels, is_target)``; :meth:`transform`
    checks the labels against those of fit and calls ``_transform_rows(X, labels, is_target)``;
    :meth:`fit_transform` passes the labels to both (scikit-learn's default would drop them). A
    member has a ``target_domain`` parameter and fills in those hooks; ``_accept_sparse`` says
    which sparse input it takes, ``_domain_order`` whether a parameter fixes the domains. The
    template sets two fitted attributes:

    * ``domains_`` (ndarray of objects): source labels seen in fit (sorted), then target labels
      (sorted), so the target comes last;
    * ``target_domain_``: the label unlabelled samples take -- ``target_domain`` if given, else
      the target label seen in fit (-1, skada's, if none); None when several target labels were
      seen without ``target_domain`` (unlabelled samples are then an error).
    """

    __metadata_request__fit = {"sample_domain": True}
    __metadata_request__transform = {"sample_domain": True}

    _parameter_constraints: dict = {"target_domain": [str, Integral, None]}

    #: Sparse input the member takes (``validate_data``'s ``accept_sparse``): False, True or a format.
    _accept_sparse: bool | str = False

    target_domain: str | int | None
    target_domain_: str | int | None

    @fit_context(prefer_skip_nested_validation=True)
    def fit(
        self: _Self,
        X: MatrixLike,
        y: ArrayLike | None = None,
        *,
        sample_domain: ArrayLike | None = None,
        domain: ArrayLike | None = None,
    ) -> _Self:
        """Learn the domains, then what the transformer computes from their rows.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training features of every domain (sparse for :class:`~sk_decaf.domain.DomainAugment`
            and :class:`~sk_decaf.domain.NoAdaptation` only).

        y : Ignored
            Not used (skada's masked target labels, -1, are fine).

        sample_domain : array-like of shape (n_samples,), default=None
            Domain label of each sample (see ``target_domain``); None, or a None / NaN entry,
            means target. Routed by meta-estimators when metadata routing is enabled: it is
            requested by default.

        domain : array-like of shape (n_samples,), default=None
            Deprecated alias of ``sample_domain`` (FutureWarning); will be removed in 0.4.

        Returns
        -------
        self : object
            Fitted transformer.
        """
        sample_domain = _renamed(sample_domain, domain)
        X = self._validate(X, reset=True)
        labels, is_target = self._fit_domains(sample_domain, X.shape[0])
        self._fit_rows(X, labels, is_target)
        return self

    def transform(
        self, X: MatrixLike, *, sample_domain: ArrayLike | None = None, domain: ArrayLike | None = None
    ) -> Features:
        """Transform each row according to its domain.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Features to transform.

        sample_domain : array-like of shape (n_samples,), default=None
            Domain label of each sample, each one seen in :meth:`fit`; None, or a None / NaN
            entry, means target (what new images at predict time are). Requested by default.

        domain : array-like of shape (n_samples,), default=None
            Deprecated alias of ``sample_domain`` (FutureWarning); will be removed in 0.4.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_features_out)
            Transformed features with the dtype of ``X``; the class docstring gives the mapping and
            :meth:`get_feature_names_out` the columns.
        """
        sample_domain = _renamed(sample_domain, domain)
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        labels, is_target = self._transform_domains(sample_domain, X.shape[0])
        return self._transform_rows(X, labels, is_target)

    def fit_transform(
        self,
        X: MatrixLike,
        y: ArrayLike | None = None,
        *,
        sample_domain: ArrayLike | None = None,
        domain: ArrayLike | None = None,
    ) -> Features:
        """Fit to ``X`` and its domain labels, then transform ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training features of every domain.

        y : array-like of shape (n_samples,), default=None
            Not used by the unsupervised methods (skada's masked target labels, -1, are fine).

        sample_domain : array-like of shape (n_samples,), default=None
            Domain label of each sample, passed to both :meth:`fit` and :meth:`transform`.

        domain : array-like of shape (n_samples,), default=None
            Deprecated alias of ``sample_domain``.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_features_out)
            Transformed features.
        """
        sample_domain = _renamed(sample_domain, domain)
        return self.fit(X, y, sample_domain=sample_domain).transform(X, sample_domain=sample_domain)

    # -- hooks of the members --------------------------------------------------------------------

    def _fit_rows(self, X: Any, labels: np.ndarray, is_target: np.ndarray) -> None:
        """Learn what the member computes from the validated rows, their labels and target mask.

        Members that learn nothing but the domains (``NoAdaptation``, ``DomainAugment``) keep this
        no-op.
        """

    def _transform_rows(self, X: Any, labels: np.ndarray, is_target: np.ndarray) -> Any:
        """Output for the validated rows, their labels (missing ones filled in) and target mask."""
        raise NotImplementedError(f"{type(self).__name__} must implement _transform_rows")

    def _domain_order(self) -> ArrayLike | None:
        """The set and order of the domains when a parameter fixes them; None: those seen in fit."""
        return None

    # -- what the template and the members share -------------------------------------------------

    def _validate(self, X: Any, *, reset: bool) -> Any:
        return validate_data(self, X, reset=reset, accept_sparse=self._accept_sparse, dtype=[np.float64, np.float32])

    def _fit_domains(self, sample_domain: ArrayLike | None, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels of the training rows (missing filled in) and their target mask; sets ``domains_``."""
        labels = check_sample_domain(sample_domain, n_samples)
        present = {label for label in labels if label is not None}
        targets = {label for label in present if is_target_label(label, self.target_domain)}
        if self.target_domain is not None:
            self.target_domain_ = self.target_domain
        elif len(targets) <= 1:
            self.target_domain_ = next(iter(targets), SKADA_TARGET)
        else:
            self.target_domain_ = None
        if self.target_domain_ is not None:
            targets.add(self.target_domain_)
        domains = self._domain_order()
        if domains is None:
            ordered = _sorted_labels(present - targets) + _sorted_labels(targets)
        else:
            ordered = self._check_fixed_domains(domains)
        self.domains_ = np.empty(len(ordered), dtype=object)
        self.domains_[:] = ordered
        return self._transform_domains(labels)

    def _check_fixed_domains(self, domains: ArrayLike) -> list[Any]:
        fixed = [_python_scalar(d) for d in np.asarray(domains, dtype=object).ravel()]
        if any(d is None for d in fixed):
            raise ValueError(f"domains must not contain None or NaN: {fixed!r}.")
        if len(set(fixed)) != len(fixed):
            raise ValueError(f"domains must not contain duplicates: {fixed!r}.")
        if self.target_domain_ is not None and self.target_domain_ not in fixed:
            raise ValueError(f"target_domain={self.target_domain_!r} is not in domains={fixed!r}.")
        return fixed

    def _transform_domains(
        self, sample_domain: ArrayLike | None, n_samples: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Labels (missing ones filled with ``target_domain_``) and the boolean target mask.

        Labels not in ``domains_`` are a ``ValueError``. ``sample_domain`` may be labels returned
        by :func:`check_sample_domain` (then ``n_samples`` is None).
        """
        labels: np.ndarray = (
            np.asarray(sample_domain) if n_samples is None else check_sample_domain(sample_domain, n_samples)
        )
        missing = np.fromiter((label is None for label in labels), dtype=bool, count=len(labels))
        known = set(self.domains_.tolist())
        unknown = sorted({repr(label) for label in labels[~missing] if label not in known})
        if unknown:
            raise ValueError(
                f"Unknown domain label(s) {', '.join(unknown)}; known domains are "
                f"{self.domains_.tolist()!r}. Pass `domains=` at construction (DomainAugment) to fix "
                "the set of domains, or no label (None) for target samples."
            )
        if missing.any() and self.target_domain_ is None:
            raise ValueError(
                f"Unlabelled samples, but fit saw several target domains {self.domains_.tolist()!r}: "
                "pass target_domain= to say which one they belong to, or label every sample."
            )
        is_target = missing.copy()
        is_target[~missing] = [is_target_label(label, self.target_domain) for label in labels[~missing]]
        if missing.any():
            labels = labels.copy()
            labels[missing] = self.target_domain_
        return labels, is_target

    def _split_source_target(self, X: Any, is_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source and target rows in float64, for the unsupervised members; sets the domain means.

        Several source labels are pooled into one source domain. ``fit`` needs a target row; without
        a source row (``fit`` with no labels, as in scikit-learn's checks) the source statistics are
        the target ones.
        """
        if not is_target.any():
            raise ValueError(
                f"No target sample in fit (target_domain={self.target_domain!r}); domains seen: "
                f"{self.domains_.tolist()!r}. Name the target with target_domain=, or use skada's "
                "integers (< 0 for target)."
            )
        X = X.astype(np.float64, copy=False)
        X_source, X_target = X[~is_target], X[is_target]
        self.mean_target_ = X_target.mean(axis=0)
        self.mean_source_ = X_source.mean(axis=0) if X_source.shape[0] else self.mean_target_.copy()
        return X_source, X_target

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = bool(self._accept_sparse)
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
