"""Every scikit-learn private name sk_decaf uses, imported here and nowhere else.

scikit-learn's parameter validation (``_param_validation``), its fit context (``_fit_context``), safe indexing
and the base class of its searches are private: they may move between releases. Importing them in one module
(imbalanced-learn's ``utils/_sklearn_compat.py`` does the same) means that a scikit-learn upgrade touches this
file only; ``tests/test_sklearn_compat.py`` checks that no other module imports a private scikit-learn name.
The package needs scikit-learn >= 1.6 (``validate_data``, ``__sklearn_tags__``).
"""

from sklearn.base import _fit_context as fit_context
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import _safe_indexing as safe_indexing
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
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
