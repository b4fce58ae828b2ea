"""What a backbone offers, computed once per process: layer names, feature sizes, data config, digest.

``DeCAFTransformer.fit`` needs these to resolve ``layer`` and to key the activation cache, but not the
network itself, which is loaded only when an image actually has to go through it. GridSearchCV fits the
transformer once per candidate and fold; with this memo each of those fits costs a dictionary lookup
instead of building a network, so a cached layer sweep runs in the time of one extraction.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from .backbones import Backbone, load_backbone, state_digest
from .layers import FeatureExtractor

__all__ = ["BackboneInfo", "backbone_info", "take_loaded"]

_MEMO: OrderedDict[str, BackboneInfo] = OrderedDict()
_MEMO_SIZE = 32
_LOCK = threading.Lock()
# The network loaded by the last inspection, handed to the first transformer that needs it, so that a
# fit followed by a transform reads the weights once.
_HANDOFF: dict[str, tuple[Backbone, str]] = {}


@dataclass(frozen=True)
class BackboneInfo:
    """Metadata of a loaded backbone; quacks like :class:`Backbone` for :func:`resolve_layers`."""

    name: str
    family: str
    layers: list
    default_layer: str
    aliases: dict
    data_config: dict
    dims: dict = field(default_factory=dict)  # layer -> pooled feature size
    digest: str = ""
    head_pool: str | None = None  # how the network pools before its head ("avg", "max", ...), when it does
    architecture: str = ""  # digest of a module backbone's structure (its repr); "" for named backbones


def _weights_key(weights):
    """Identify a weights file by path, size and modification time; ``None``/"random" as such."""
    if weights is None or weights == "random":
        return weights
    path = os.path.abspath(os.fspath(weights))
    try:
        st = os.stat(path)
    except OSError:
        return path  # load_backbone raises the clear error
    return (path, st.st_size, st.st_mtime_ns)


def _memo_key(backbone, weights, model_kwargs, seed, pooling):
    if not isinstance(backbone, str):
        return None
    return json.dumps(
        [backbone, _weights_key(weights), model_kwargs or {}, seed if weights == "random" else None, pooling],
        sort_keys=True,
        default=str,
    )


def head_pool(model):
    """The global pooling a timm model applies before its head (``"avg"``, ``"max"``, ``"avgmax"`` ...)."""
    pool = getattr(model, "global_pool", None)
    kind = getattr(pool, "pool_type", pool)
    return kind if isinstance(kind, str) and kind else None


def _probe(backbone, pooling):
    """Feature size of every layer: one blank image through the whole network."""
    extractor = FeatureExtractor(backbone, backbone.layers, pooling).eval()
    blank = torch.zeros((1, *backbone.data_config["input_size"]), dtype=torch.uint8)
    with torch.inference_mode():
        outs = extractor(blank)
    return {name: int(o.shape[1]) for name, o in zip(backbone.layers, outs)}


def backbone_info(backbone, weights, model_kwargs, seed, pooling):
    """Return the :class:`BackboneInfo` of a backbone configuration, memoised for named backbones.

    A ``torch.nn.Module`` backbone is inspected every time (it may change between calls).
    """
    key = _memo_key(backbone, weights, model_kwargs, seed, pooling)
    if key is not None:
        with _LOCK:
            if key in _MEMO:
                _MEMO.move_to_end(key)
                return _MEMO[key]
    loaded = load_backbone(backbone, weights, model_kwargs, seed=seed)
    # The probe reads every layer without pruning anything, so the network stays reusable.
    info = BackboneInfo(
        name=loaded.name,
        family=loaded.family,
        layers=list(loaded.layers),
        default_layer=loaded.default_layer,
        aliases=dict(loaded.aliases),
        data_config=dict(loaded.data_config),
        dims=_probe(loaded, pooling),
        digest=state_digest(loaded.model),
        head_pool=head_pool(loaded.model) if loaded.family == "timm" else None,
        architecture="" if isinstance(backbone, str) else hashlib.sha256(repr(loaded.model).encode()).hexdigest()[:32],
    )
    if key is not None:
        with _LOCK:
            _MEMO[key] = info
            while len(_MEMO) > _MEMO_SIZE:
                _MEMO.popitem(last=False)
            _HANDOFF.clear()
            _HANDOFF[key] = (loaded, info.digest)
    return info


def take_loaded(backbone, weights, model_kwargs, seed, pooling, digest):
    """The network :func:`backbone_info` just loaded for this configuration, once; else ``None``."""
    key = _memo_key(backbone, weights, model_kwargs, seed, pooling)
    if key is None:
        return None
    with _LOCK:
        loaded, loaded_digest = _HANDOFF.pop(key, (None, None))
    return loaded if loaded_digest == digest else None
