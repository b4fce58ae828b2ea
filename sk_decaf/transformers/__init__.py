"""Transformers: DeCAF feature extraction and the post-processing steps that follow it."""

from ..domain import CORAL, DomainAugment, GeodesicFlowKernel, SubspaceAlignment  # home: sk_decaf.domain
from ._decaf import DeCAFTransformer
from ._feature_dropout import FeatureDropout
from ._signed_sqrt import SignedSqrt

__all__ = [
    "DeCAFTransformer",
    "CORAL",
    "GeodesicFlowKernel",
    "SubspaceAlignment",
    "DomainAugment",
    "FeatureDropout",
    "SignedSqrt",
]
