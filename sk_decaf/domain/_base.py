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

References
----------
.. [1] T. Gnassounou, O. Kachaiev, R. Flamary et al. "SKADA: Scikit Adaptation",
   https://scikit-adaptation.github.io.
"""

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

__all__ = ["BaseDomainTransformer"]

#: Label of the target domain for unlabelled samples under skada's convention (skada uses -1 when
#: no ``sample_domain`` is given at all).
SKADA_TARGET = -1

#: Docstring fragments shared by the family (imbalanced-learn's ``Substitution`` idea): a
#: ``%(name)s`` marker in a class or method docstring is replaced by the text below.
_SHARED_DOCS = {
    "target_domain": """target_domain : str, int or None, default=None
        Label of the target domain. None follows skada's convention for integer labels: ``>= 0``
        source, ``< 0`` target; readable labels (strings) need the name of the target here.
        Samples without a label are target samples either way.""",
    "sample_domain_fit": """sample_domain : array-like of shape (n_samples,), default=None
            Domain label of each sample (see ``target_domain``); None, or a None / NaN entry,
            means target. Routed by meta-estimators when metadata routing is enabled: it is
            requested by default.""",
    "sample_domain_transform": """sample_domain : array-like of shape (n_samples,), default=None
            Domain label of each sample, each one seen in :meth:`fit`; None, or a None / NaN
            entry, means target (what new images at predict time are). Requested by default.""",
    "domain_deprecated": """domain : array-like of shape (n_samples,), default=None
            Deprecated alias of ``sample_domain`` (FutureWarning); will be removed in 0.4.""",
    "routing": """The domain of each sample is the ``sample_domain`` metadata of :meth:`fit` and
    :meth:`transform`, requested by default: with metadata routing enabled
    (``sklearn.set_config(enable_metadata_routing=True)``) ``pipe.fit(X, y, sample_domain=d)``
    reaches this step inside a :class:`~sklearn.pipeline.Pipeline`, a
    :class:`~sklearn.model_selection.GridSearchCV` or a ``skada.make_da_pipeline``.""",
}


def fill_doc(obj):
    """Replace the ``%(name)s`` markers of ``obj``'s docstring (and its methods') by shared text."""
    targets = [obj] + [getattr(obj, m) for m in ("fit", "transform", "fit_transform") if m in vars(obj)]
    for target in targets:
        doc = target.__doc__
        if doc:
            for key, text in _SHARED_DOCS.items():
                doc = doc.replace(f"%({key})s", text)
            target.__doc__ = doc
    return obj


def _python_scalar(label):
    """Python scalar of a label; None for None and NaN; integral floats (-2.0) as ints."""
    if isinstance(label, np.generic):
        label = label.item()
    if label is None:
        return None
    if isinstance(label, numbers.Real) and not isinstance(label, (numbers.Integral, bool)):
        if label != label:  # NaN
            return None
        if float(label).is_integer():
            return int(label)
    return label


def check_sample_domain(sample_domain, n_samples):
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


def is_target_label(label, target_domain):
    """Whether a (non-missing) label is a target domain under the ``target_domain`` rule."""
    if target_domain is not None:
        return label == target_domain
    if not isinstance(label, numbers.Integral) or isinstance(label, bool):
        raise ValueError(
            f"Domain label {label!r} is not one of skada's integers (>= 0 source, < 0 target): "
            "pass target_domain=<name of the target domain> to use readable labels."
        )
    return label < 0


def _sorted_labels(labels):
    try:
        return sorted(labels)
    except TypeError as exc:
        raise ValueError(
            f"Domain labels must be mutually comparable (all strings or all numbers), got {sorted(map(repr, labels))}."
        ) from exc


def _renamed(sample_domain, domain):
    """``sample_domain``, or the deprecated ``domain`` with a FutureWarning."""
    if domain is None:
        return sample_domain
    if sample_domain is not None:
        raise TypeError("Pass the domain labels once, as sample_domain (domain is its deprecated alias).")
    warnings.warn(
        "`domain` was renamed `sample_domain` (skada's name) in sk_decaf 0.2 and will be removed in "
        "0.4: pass sample_domain=... (routing requests it by default, no set_*_request needed).",
        FutureWarning,
        stacklevel=3,
    )
    return domain


class BaseDomainTransformer(TransformerMixin, BaseEstimator):
    """Base class of the transformers that take per-sample domain labels (``sample_domain``).

    It requests ``sample_domain`` for ``fit`` and ``transform`` at class level, passes it to both in
    :meth:`fit_transform` (scikit-learn's default would drop it), and implements the label rules of
    the module docstring. A subclass has a ``target_domain`` parameter, calls
    :meth:`_fit_domains` in ``fit`` and :meth:`_transform_domains` in ``transform``; these set and
    use two fitted attributes:

    * ``domains_`` (ndarray of objects): source labels seen in fit (sorted), then target labels
      (sorted), so the target comes last;
    * ``target_domain_``: the label unlabelled samples take -- ``target_domain`` if given, else
      the target label seen in fit (-1, skada's, if none); None when several target labels were
      seen without ``target_domain`` (unlabelled samples are then an error).
    """

    __metadata_request__fit = {"sample_domain": True}
    __metadata_request__transform = {"sample_domain": True}

    def fit_transform(self, X, y=None, *, sample_domain=None, domain=None):
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

    def _fit_domains(self, sample_domain, n_samples, *, domains=None):
        """Labels of the training rows (missing filled in) and their target mask; sets ``domains_``.

        ``domains`` fixes the set and order of the domains (``DomainAugment(domains=...)``).
        """
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
        if domains is None:
            ordered = _sorted_labels(present - targets) + _sorted_labels(targets)
        else:
            ordered = self._check_fixed_domains(domains)
        self.domains_ = np.empty(len(ordered), dtype=object)
        self.domains_[:] = ordered
        return self._transform_domains(labels)

    def _check_fixed_domains(self, domains):
        fixed = [_python_scalar(d) for d in np.asarray(domains, dtype=object).ravel()]
        if any(d is None for d in fixed):
            raise ValueError(f"domains must not contain None or NaN: {fixed!r}.")
        if len(set(fixed)) != len(fixed):
            raise ValueError(f"domains must not contain duplicates: {fixed!r}.")
        if self.target_domain_ is not None and self.target_domain_ not in fixed:
            raise ValueError(f"target_domain={self.target_domain_!r} is not in domains={fixed!r}.")
        return fixed

    def _transform_domains(self, sample_domain, n_samples=None):
        """Labels (missing ones filled with ``target_domain_``) and the boolean target mask.

        Labels not in ``domains_`` are a ``ValueError``. ``sample_domain`` may be labels returned
        by :func:`check_sample_domain` (then ``n_samples`` is None).
        """
        labels = sample_domain if n_samples is None else check_sample_domain(sample_domain, n_samples)
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

    def _require_target(self, is_target):
        if not is_target.any():
            raise ValueError(
                f"No target sample in fit (target_domain={self.target_domain!r}); domains seen: "
                f"{self.domains_.tolist()!r}. Name the target with target_domain=, or use skada's "
                "integers (< 0 for target)."
            )
