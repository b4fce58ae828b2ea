"""Transformers: DeCAF feature extraction and the post-processing steps that follow it."""

from ._coral import CORAL
from ._decaf import DeCAFTransformer
from ._domain_augment import DomainAugment
from ._feature_dropout import FeatureDropout
from ._gfk import GeodesicFlowKernel
from ._signed_sqrt import SignedSqrt
from ._subspace_alignment import SubspaceAlignment

__all__ = [
    "DeCAFTransformer",
    "CORAL",
    "GeodesicFlowKernel",
    "SubspaceAlignment",
    "DomainAugment",
    "FeatureDropout",
    "SignedSqrt",
]
