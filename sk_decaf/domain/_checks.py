"""The contract of a domain-adaptation transformer, as checks run over every member of the family.

Like imbalanced-learn's ``_yield_sampler_checks``: :func:`yield_domain_transformer_checks` yields
one check per rule of :mod:`sk_decaf.domain` (labels, routing, skada's conventions, dtype, pickling),
each a callable ``check(name, estimator)`` that raises ``AssertionError`` on failure;
:func:`check_domain_transformer` runs them all. scikit-learn's own ``parametrize_with_checks``
still runs on every estimator (``tests/test_common.py``); these checks cover what it cannot see,
since it never passes ``sample_domain``.
"""

import pickle
import warnings
from collections.abc import Callable, Iterator

import numpy as np
from numpy.testing import assert_allclose
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.metadata_routing import get_routing_for_object

from ._base import BaseDomainTransformer

__all__ = ["check_domain_transformer", "yield_domain_transformer_checks"]

#: Readable names of the two domains of the check data, and their skada integers.
SOURCE, TARGET = "amazon", "webcam"
SKADA = {SOURCE: 1, TARGET: -2}


def _data(
    seed: int = 0, n_source: int = 40, n_target: int = 30, n_features: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two domains with different means and covariances, two classes in each."""
    rng = np.random.RandomState(seed)
    X_source = rng.normal(size=(n_source, n_features)) @ rng.normal(size=(n_features, n_features)) + 1.0
    X_target = rng.normal(size=(n_target, n_features)) @ rng.normal(scale=0.5, size=(n_features,) * 2) - 1.0
    X = np.vstack([X_source, X_target])
    y = np.r_[np.arange(n_source) % 2, np.arange(n_target) % 2]
    X[:, 0] += 3.0 * y
    names = np.array([SOURCE] * n_source + [TARGET] * n_target, dtype=object)
    return X, y, names


def _readable(estimator: BaseDomainTransformer) -> BaseDomainTransformer:
    return clone(estimator).set_params(target_domain=TARGET)


def _close(actual: np.ndarray, desired: np.ndarray, dtype: type = np.float64) -> None:
    """Equal up to rounding: float32 results compare with float32-sized tolerances."""
    tol = 1e-4 if dtype == np.float32 else 1e-8
    actual, desired = (a.toarray() if hasattr(a, "toarray") else np.asarray(a) for a in (actual, desired))
    assert_allclose(actual, desired, rtol=tol, atol=tol * max(1.0, np.abs(desired).max()))


def check_requests_sample_domain_by_default(name: str, estimator: BaseDomainTransformer) -> None:
    """fit and transform request ``sample_domain`` with no ``set_*_request`` call."""
    with config_context(enable_metadata_routing=True):
        routing = get_routing_for_object(clone(estimator))
        for method in ("fit", "transform", "fit_transform"):
            assert routing.consumes(method=method, params={"sample_domain"}), (
                f"{name}.{method} does not request sample_domain by default"
            )


def check_fit_transform_passes_sample_domain(name: str, estimator: BaseDomainTransformer) -> None:
    """``fit_transform`` gives ``fit(...).transform(...)`` with the same labels."""
    X, _, d = _data()
    est = _readable(estimator)
    _close(est.fit_transform(X, sample_domain=d), clone(est).fit(X, sample_domain=d).transform(X, sample_domain=d))


def check_skada_integer_labels(name: str, estimator: BaseDomainTransformer) -> None:
    """skada's integers (>= 0 source, < 0 target; target_domain=None) give the readable result."""
    X, _, d = _data()
    readable = _readable(estimator).fit(X, sample_domain=d)
    skada = clone(estimator).set_params(target_domain=None)
    codes = np.array([SKADA[label] for label in d])
    _close(skada.fit_transform(X, sample_domain=codes), readable.transform(X, sample_domain=d))
    assert skada.target_domain_ == SKADA[TARGET], f"{name}.target_domain_ is {skada.target_domain_!r}"
    _close(skada.transform(X[d == TARGET]), readable.transform(X[d == TARGET]))


def check_masked_target_labels_are_ignored(name: str, estimator: BaseDomainTransformer) -> None:
    """skada masks target labels with -1 before fitting; the transformer does not use them."""
    X, y, d = _data()
    masked = np.where(d == TARGET, -1, y)
    est = _readable(estimator)
    _close(clone(est).fit_transform(X, masked, sample_domain=d), est.fit_transform(X, sample_domain=d))


def check_unlabelled_samples_are_target(name: str, estimator: BaseDomainTransformer) -> None:
    """No label, a None or a NaN entry means target, at fit and at transform time."""
    X, _, d = _data()
    est = _readable(estimator).fit(X, sample_domain=d)
    target = X[d == TARGET]
    labelled = est.transform(target, sample_domain=[TARGET] * len(target))
    _close(est.transform(target), labelled)
    holes = np.array([None, np.nan] * (len(target) // 2) + [None] * (len(target) % 2), dtype=object)
    _close(est.transform(target, sample_domain=holes), labelled)
    partly = np.where(d == TARGET, np.asarray(None, dtype=object), d)
    _close(clone(est).fit_transform(X, sample_domain=partly), est.transform(X, sample_domain=d))


def check_unknown_and_unnamed_labels_are_errors(name: str, estimator: BaseDomainTransformer) -> None:
    """A label unseen in fit, and readable labels without target_domain, are clear ValueErrors."""
    X, _, d = _data()
    est = _readable(estimator).fit(X, sample_domain=d)
    try:
        est.transform(X[:2], sample_domain=["dslr", TARGET])
    except ValueError as exc:
        assert "Unknown domain label" in str(exc) and "'dslr'" in str(exc), str(exc)
    else:
        raise AssertionError(f"{name}.transform accepted a label unseen in fit")
    try:
        clone(estimator).set_params(target_domain=None).fit(X, sample_domain=d)
    except ValueError as exc:
        assert "target_domain" in str(exc), str(exc)
    else:
        raise AssertionError(f"{name}.fit accepted readable labels without target_domain")


def check_deprecated_domain_keyword(name: str, estimator: BaseDomainTransformer) -> None:
    """The old ``domain=`` keyword still works, with a FutureWarning naming ``sample_domain``."""
    X, _, d = _data()
    expected = _readable(estimator).fit_transform(X, sample_domain=d)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = _readable(estimator).fit(X, domain=d).transform(X, domain=d)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert len(messages) == 2 and all("sample_domain" in m for m in messages), messages
    _close(old, expected)


def check_pipeline_routing(name: str, estimator: BaseDomainTransformer) -> None:
    """With routing on, a Pipeline passes ``sample_domain`` to fit and predict; none needed at predict."""
    X, y, d = _data()
    test = d == TARGET
    by_hand = _readable(estimator).fit(X, sample_domain=d)
    clf = LogisticRegression(max_iter=2000).fit(by_hand.transform(X, sample_domain=d), y)
    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(_readable(estimator), LogisticRegression(max_iter=2000))
        pipe.fit(X, y, sample_domain=d)
        _close(pipe.decision_function(X, sample_domain=d), clf.decision_function(by_hand.transform(X, sample_domain=d)))
        _close(pipe.decision_function(X[test]), clf.decision_function(by_hand.transform(X[test])))


def check_float32_is_preserved(name: str, estimator: BaseDomainTransformer) -> None:
    """float32 in, float32 out, equal to the float64 result up to float32 rounding."""
    X, _, d = _data()
    out32 = _readable(estimator).fit_transform(X.astype(np.float32), sample_domain=d)
    assert out32.dtype == np.float32, f"{name} returned {out32.dtype} for float32 input"
    _close(out32, _readable(estimator).fit_transform(X, sample_domain=d), np.float32)


def check_pickle_and_clone(name: str, estimator: BaseDomainTransformer) -> None:
    """A pickled transformer gives the same output; a clone has no fitted state."""
    X, _, d = _data()
    est = _readable(estimator).fit(X, sample_domain=d)
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.transform(X, sample_domain=d), est.transform(X, sample_domain=d))
    fresh = clone(est)
    assert not hasattr(fresh, "domains_") and fresh.get_params() == est.get_params()
    try:
        fresh.transform(X)
    except NotFittedError:
        pass
    else:
        raise AssertionError(f"{name}.transform before fit did not raise NotFittedError")


def check_pandas_output(name: str, estimator: BaseDomainTransformer) -> None:
    """``set_output(transform="pandas")`` names the columns with ``get_feature_names_out``."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is in [dev]
        return
    X, _, d = _data()
    est = _readable(estimator).set_output(transform="pandas")
    out = est.fit_transform(pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]), sample_domain=d)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(est.get_feature_names_out())


def yield_domain_transformer_checks(
    estimator: BaseDomainTransformer,
) -> Iterator[Callable[[str, BaseDomainTransformer], None]]:
    """Yield the checks of the domain-transformer contract, each ``check(name, estimator)``.

    Parameters
    ----------
    estimator : BaseDomainTransformer
        An unfitted instance, built with small settings (it is cloned, and its
        ``target_domain`` set, by each check).

    Yields
    ------
    check : callable
        A check taking ``(name, estimator)``; it raises ``AssertionError`` on failure.
    """
    yield check_requests_sample_domain_by_default
    yield check_fit_transform_passes_sample_domain
    yield check_skada_integer_labels
    yield check_masked_target_labels_are_ignored
    yield check_unlabelled_samples_are_target
    yield check_unknown_and_unnamed_labels_are_errors
    yield check_deprecated_domain_keyword
    yield check_pipeline_routing
    yield check_float32_is_preserved
    yield check_pickle_and_clone
    yield check_pandas_output


def check_domain_transformer(estimator: BaseDomainTransformer) -> None:
    """Run every check of :func:`yield_domain_transformer_checks` on ``estimator``.

    Parameters
    ----------
    estimator : BaseDomainTransformer
        An unfitted instance.

    Examples
    --------
    >>> from sk_decaf.domain import CORAL, check_domain_transformer
    >>> check_domain_transformer(CORAL())  # raises AssertionError on a broken rule
    """
    name = type(estimator).__name__
    for check in yield_domain_transformer_checks(estimator):
        check(name, estimator)
