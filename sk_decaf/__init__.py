"""sk_decaf: DeCAF features from frozen ImageNet CNNs as scikit-learn transformers."""

from ._version import __version__
from ._torch.layers import list_layers
from .transformers import DeCAFTransformer
from .transformers import DomainAugment, FeatureDropout, SignedSqrt
from .domain import CORAL, GeodesicFlowKernel, NoAdaptation, SubspaceAlignment
from .heads import FineTunedClassifier, RetrievalIndex, mean_average_precision, spatial_windows
from .evaluation import evaluate, profile_layers
from .model_selection import DomainAdaptationSplit, OfficialSplit, PerClassSplit
from .deploy import to_onnx

__all__ = [
    "__version__",
    "DeCAFTransformer",
    "list_layers",
    "DomainAugment",
    "FeatureDropout",
    "SignedSqrt",
    "CORAL",
    "GeodesicFlowKernel",
    "SubspaceAlignment",
    "NoAdaptation",
    "FineTunedClassifier",
    "RetrievalIndex",
    "mean_average_precision",
    "spatial_windows",
    "evaluate",
    "profile_layers",
    "DomainAdaptationSplit",
    "OfficialSplit",
    "PerClassSplit",
    "to_onnx",
]
