"""Private helpers for per-sample domain labels.

Domain-adaptation transformers (:class:`~sk_decaf.transformers.DomainAugment`,
CORAL, subspace alignment, geodesic flow kernel) receive the domain of every
sample as the ``domain`` metadata of ``fit`` / ``transform``. They share one set
of rules, implemented here so that all of them behave the same:

* ``domain`` is ``None`` or a 1-D array-like with one label per sample
  (strings or integers; a pandas Series works).
* A missing domain -- ``domain=None`` as a whole, or an entry that is ``None``
  or NaN -- means *the target domain*. That is what a user has at predict time
  for new images, so it is also the convenient default at fit time.
* A label that the fitted estimator has not seen is a ``ValueError`` that names
  the unknown labels and the known ones.

Typical use inside an estimator::

    domain = check_domain(domain, X.shape[0], target_domain=self.target_domain)
    self.domains_ = resolve_domains(domain, self.target_domain, self.domains)
    codes = encode_domain(domain, self.domains_)  # int index into domains_
    is_target = domain_mask(domain, self.target_domain)
"""

import numbers

import numpy as np

__all__ = ["DomainTransformerMixin", "check_domain", "domain_mask", "encode_domain", "resolve_domains"]


def _is_missing(label):
    """Return True for ``None`` and floating-point NaN."""
    if label is None:
        return True
    # NaN is the only real number unequal to itself.
    if isinstance(label, numbers.Integral) or not isinstance(label, numbers.Real):
        return False
    return label != label


def check_domain(domain, n_samples, *, target_domain):
    """Validate per-sample domain labels and fill missing ones with the target.

    Parameters
    ----------
    domain : array-like of shape (n_samples,) or None
        One domain label per sample. ``None`` (or ``None`` / NaN entries)
        stands for ``target_domain``.
    n_samples : int
        Number of rows of the data the labels belong to.
    target_domain : hashable
        Label substituted for missing domains.

    Returns
    -------
    domain : ndarray of shape (n_samples,), dtype=object
        A new array of labels with no missing entries.

    Raises
    ------
    ValueError
        If ``domain`` is not 1-D or its length differs from ``n_samples``.
    """
    if domain is None:
        out = np.empty(n_samples, dtype=object)
        out[:] = [target_domain] * n_samples
        return out
    out = np.asarray(domain, dtype=object)
    if out.ndim != 1:
        raise ValueError(
            f"domain must be a 1-D array-like of labels, got shape {out.shape}."
        )
    if out.shape[0] != n_samples:
        raise ValueError(
            f"domain has {out.shape[0]} labels but X has {n_samples} samples; "
            "pass one domain label per sample."
        )
    # Python scalars (not np.str_ / np.int64) keep reprs and names readable.
    labels = [v.item() if isinstance(v, np.generic) else v for v in out]
    out = np.empty(n_samples, dtype=object)
    out[:] = [target_domain if _is_missing(v) else v for v in labels]
    return out


def _sorted_labels(labels):
    try:
        return sorted(labels)
    except TypeError as exc:
        raise ValueError(
            "Domain labels must be mutually comparable (all strings or all "
            f"numbers), got {sorted(map(repr, labels))}."
        ) from exc


def resolve_domains(domain, target_domain, domains=None):
    """Return the ordered domain set of a fitted estimator (``domains_``).

    Parameters
    ----------
    domain : ndarray of shape (n_samples,)
        Labels as returned by :func:`check_domain`.
    target_domain : hashable
        The target domain; always part of the result.
    domains : array-like or None
        User-fixed set and order of domains. When given, it is returned as is
        after checking it contains ``target_domain`` and every label of
        ``domain``.

    Returns
    -------
    domains_ : ndarray, dtype=object
        If ``domains`` is None: the source domains seen in ``domain`` in sorted
        order, followed by ``target_domain`` (so the target block comes last,
        as in Daumé III's ``[x, x_source, x_target]`` layout).
    """
    if domains is not None:
        fixed = list(np.asarray(domains, dtype=object).ravel())
        if any(_is_missing(d) for d in fixed):
            raise ValueError(f"domains must not contain None or NaN: {fixed!r}.")
        if len(set(fixed)) != len(fixed):
            raise ValueError(f"domains must not contain duplicates: {fixed!r}.")
        if target_domain not in fixed:
            raise ValueError(
                f"target_domain={target_domain!r} is not in domains={fixed!r}."
            )
        result = fixed
    else:
        sources = _sorted_labels(set(domain.tolist()) - {target_domain})
        result = sources + [target_domain]
    out = np.empty(len(result), dtype=object)
    out[:] = result
    # Validates that every training label is known (relevant when fixed).
    encode_domain(domain, out)
    return out


def encode_domain(domain, domains):
    """Map each label to its position in ``domains``.

    Parameters
    ----------
    domain : ndarray of shape (n_samples,)
        Labels as returned by :func:`check_domain`.
    domains : sequence
        Known domains, typically a fitted ``domains_``.

    Returns
    -------
    codes : ndarray of shape (n_samples,), dtype=intp
        ``codes[i]`` is the index of ``domain[i]`` in ``domains``.

    Raises
    ------
    ValueError
        If some labels are not in ``domains``; the message lists them.
    """
    index = {d: i for i, d in enumerate(domains)}
    codes = np.fromiter(
        (index.get(d, -1) for d in domain), dtype=np.intp, count=len(domain)
    )
    if (codes < 0).any():
        unknown = sorted({repr(d) for d in domain[codes < 0]})
        raise ValueError(
            f"Unknown domain label(s) {', '.join(unknown)}; known domains are "
            f"{list(domains)!r}. Pass `domains=` at construction to fix the set "
            "of domains, or use None for the target domain."
        )
    return codes


def domain_mask(domain, label):
    """Boolean mask of the samples whose domain equals ``label``.

    Parameters
    ----------
    domain : ndarray of shape (n_samples,)
        Labels as returned by :func:`check_domain`.
    label : hashable
        Domain to select, e.g. the target domain.

    Returns
    -------
    mask : ndarray of shape (n_samples,), dtype=bool
    """
    return np.fromiter((d == label for d in domain), dtype=bool, count=len(domain))


class DomainTransformerMixin:
    """Shared behaviour of the transformers that take per-sample ``domain`` metadata.

    ``fit_transform`` passes ``domain`` on to both ``fit`` and ``transform`` (scikit-learn's default
    would drop it), and :meth:`_target_mask` validates transform-time labels against ``domains_``.
    """

    def fit_transform(self, X, y=None, *, domain=None):
        """Fit to ``X`` and its domains, then transform ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training features of every domain.

        y : Ignored
            Not used, present here for API consistency by convention.

        domain : array-like of shape (n_samples,), default=None
            Domain label of each sample, passed to both :meth:`fit` and
            :meth:`transform`.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_features_out)
            Transformed features.
        """
        return self.fit(X, y, domain=domain).transform(X, domain=domain)

    def _target_mask(self, domain, n_samples):
        """Boolean mask of the target rows; labels unseen in fit are a ``ValueError``."""
        domain = check_domain(domain, n_samples, target_domain=self.target_domain)
        encode_domain(domain, self.domains_)
        return domain_mask(domain, self.target_domain)
