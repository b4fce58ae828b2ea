"""Transformers: DeCAF feature extraction and the post-processing steps that follow it.

* :class:`DeCAFTransformer` -- images in, activations of a pretrained network's layer out;
  :func:`list_layers` says which layers a backbone has; :func:`make_ensemble` concatenates several backbones;
* :class:`FeatureDropout` and :class:`SignedSqrt` -- what DeCAF and Azizpour et al. apply to the features.

The domain-adaptation transformers live in :mod:`sk_decaf.domain`.
"""

import warnings
from typing import Any

from ._decaf import DeCAFTransformer
from ._ensemble import make_ensemble
from ._feature_dropout import FeatureDropout
from ._layers import list_layers
from ._signed_sqrt import SignedSqrt

__all__ = ["DeCAFTransformer", "FeatureDropout", "SignedSqrt", "list_layers", "make_ensemble"]

#: Names that used to be importable from here; their home is sk_decaf.domain (and the top level).
_MOVED_TO_DOMAIN = ("CORAL", "DomainAugment", "GeodesicFlowKernel", "SubspaceAlignment")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_DOMAIN:
        warnings.warn(
            f"Importing {name} from sk_decaf.transformers is deprecated since sk_decaf 0.2 and will stop working in "
            f"0.3: import it from sk_decaf.domain or from sk_decaf (`from sk_decaf.domain import {name}`).",
            FutureWarning,
            stacklevel=2,
        )
        from .. import domain

        return getattr(domain, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
