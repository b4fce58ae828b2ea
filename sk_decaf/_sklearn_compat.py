"""Every scikit-learn private name sk_decaf uses, imported here and nowhere else.

scikit-learn's parameter validation (``_param_validation``), its fit context (``_fit_context``), safe indexing
and the base class of its searches are private: they may move between releases. Importing them in one module
(imbalanced-learn's ``utils/_sklearn_compat.py`` does the same) means that a scikit-learn upgrade touches this
file only; ``tests/test_sklearn_compat.py`` checks that no other module imports a private scikit-learn name.
The package needs scikit-learn >= 1.6 (``validate_data``, ``__sklearn_tags__``).

scikit-learn has no type information, so its decorators would turn what they decorate into ``Any`` for type
checkers; :func:`fit_context` and :func:`validate_params` are typed wrappers that return scikit-learn's own
decorators, so a decorated ``fit`` or function keeps its signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sklearn.base import _fit_context
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import _safe_indexing as safe_indexing
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils._param_validation import validate_params as _validate_params
from sklearn.utils.validation import _check_feature_names_in as check_feature_names_in
from sklearn.utils.validation import _num_samples as num_samples

__all__ = [
    "BaseSearchCV",
    "HasMethods",
    "Interval",
    "RealNotInt",
    "StrOptions",
    "check_feature_names_in",
    "fit_context",
    "num_samples",
    "safe_indexing",
    "validate_parameter_constraints",
    "validate_params",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def fit_context(*, prefer_skip_nested_validation: bool) -> Callable[[_F], _F]:
    """scikit-learn's ``_fit_context``: validate the parameters on ``fit``; the method keeps its type."""
    decorator: Callable[[_F], _F] = _fit_context(prefer_skip_nested_validation=prefer_skip_nested_validation)
    return decorator


def validate_params(
    parameter_constraints: Mapping[str, Any], *, prefer_skip_nested_validation: bool
) -> Callable[[_F], _F]:
    """scikit-learn's ``validate_params``: validate a function's arguments; the function keeps its type."""
    decorator: Callable[[_F], _F] = _validate_params(
        parameter_constraints, prefer_skip_nested_validation=prefer_skip_nested_validation
    )
    return decorator
