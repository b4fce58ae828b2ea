"""sk_decaf: DeCAF features from frozen ImageNet CNNs as scikit-learn transformers.

Public names are imported on first use (PEP 562), so ``import sk_decaf`` is cheap and the parts that do not
need torch or scikit-learn (``sk-decaf predict``, the ONNX runtime) never import them.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # imported on first use at run time (below); type checkers see the real names
    from .deploy import to_onnx as to_onnx
    from .domain import CORAL as CORAL
    from .domain import DomainAugment as DomainAugment
    from .domain import GeodesicFlowKernel as GeodesicFlowKernel
    from .domain import NoAdaptation as NoAdaptation
    from .domain import SubspaceAlignment as SubspaceAlignment
    from .evaluation import evaluate as evaluate
    from .evaluation import profile_layers as profile_layers
    from .heads import FineTunedClassifier as FineTunedClassifier
    from .heads import RetrievalIndex as RetrievalIndex
    from .heads import mean_average_precision as mean_average_precision
    from .heads import spatial_windows as spatial_windows
    from .model_selection import DomainAdaptationSplit as DomainAdaptationSplit
    from .model_selection import OfficialSplit as OfficialSplit
    from .model_selection import PerClassSplit as PerClassSplit
    from .transformers import DeCAFTransformer as DeCAFTransformer
    from .transformers import FeatureDropout as FeatureDropout
    from .transformers import SignedSqrt as SignedSqrt
    from .transformers import list_layers as list_layers
    from .transformers import make_ensemble as make_ensemble

#: Public name -> the submodule that defines it.
_LAZY = {
    "DeCAFTransformer": ".transformers",
    "DomainAugment": ".domain",
    "FeatureDropout": ".transformers",
    "SignedSqrt": ".transformers",
    "list_layers": ".transformers",
    "CORAL": ".domain",
    "GeodesicFlowKernel": ".domain",
    "SubspaceAlignment": ".domain",
    "NoAdaptation": ".domain",
    "FineTunedClassifier": ".heads",
    "RetrievalIndex": ".heads",
    "mean_average_precision": ".heads",
    "spatial_windows": ".heads",
    "evaluate": ".evaluation",
    "profile_layers": ".evaluation",
    "DomainAdaptationSplit": ".model_selection",
    "OfficialSplit": ".model_selection",
    "PerClassSplit": ".model_selection",
    "to_onnx": ".deploy",
    "make_ensemble": ".transformers",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
