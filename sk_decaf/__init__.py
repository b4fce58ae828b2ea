"""sk_decaf: DeCAF features from frozen ImageNet CNNs as scikit-learn transformers.

Public names are imported on first use (PEP 562), so ``import sk_decaf`` is cheap and the parts that do not
need torch or scikit-learn (``sk-decaf predict``, the ONNX runtime) never import them.
"""

import importlib

from ._version import __version__

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


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
