"""What a backbone offers, computed once per process: layer names, activation shapes, data config, digest.

``DeCAFTransformer.fit`` needs these to resolve ``layer`` and to key the activation cache, but not the
network itself, which is loaded only when an image actually has to go through it. GridSearchCV fits the
transformer once per candidate and fold; with this memo each of those fits costs a dictionary lookup
instead of building a network, so a cached layer sweep runs in the time of one extraction.

The probe records each layer's activation *shape* (a map, tokens with their prefix, a vector), not its
pooled size: the feature size under any ``pooling`` follows from the shape (:meth:`BackboneInfo.dim`), so
one probe serves every pooling, and a pooling that does not apply to some layer (a class token on a
convolutional map) is refused only for the layers that are asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from .backbones import Backbone, check_input_size, load_backbone, state_digest
from .layers import FeatureExtractor, Tokens, pool

__all__ = ["BackboneInfo", "LayerShape", "backbone_info", "take_loaded"]

_MEMO: OrderedDict[str, BackboneInfo] = OrderedDict()
_MEMO_SIZE = 32
_LOCK = threading.Lock()
# The network loaded by the last inspection, handed to the first transformer that needs it, so that a
# fit followed by a transform reads the weights once.
_HANDOFF: dict[str, tuple[Backbone, str]] = {}


@dataclass(frozen=True)
class LayerShape:
    """The activation of one layer for one image, before pooling.

    ``shape`` is the tensor's shape without the batch axis (``(D,)``, ``(C, H, W)`` ...) or, for a token
    layer, its patch map's ``(C, H, W)``; ``prefix`` is then the number of prefix tokens (``None`` for other
    layers) and ``cls`` whether one of them is a class token.
    """

    shape: tuple
    prefix: int | None = None
    cls: bool = False

    @classmethod
    def of(cls, activation):
        if isinstance(activation, Tokens):
            n_prefix = 0 if activation.prefix is None else int(activation.prefix.shape[1])
            return cls(tuple(activation.patches.shape[1:]), n_prefix, activation.cls_index is not None)
        return cls(tuple(activation.shape[1:]))

    def example(self):
        """A zero activation of this shape (one image), as the network's taps give it."""
        zeros = torch.zeros((1, *self.shape))
        if self.prefix is None:
            return zeros
        prefix = torch.zeros((1, self.prefix, self.shape[0])) if self.prefix else None
        return Tokens(zeros, prefix, 0 if self.cls else None)

    def dim(self, pooling):
        """The feature size under ``pooling``; a ``ValueError`` where the pooling does not apply."""
        return int(pool(self.example(), pooling).shape[1])


@dataclass(frozen=True)
class BackboneInfo:
    """Metadata of a loaded backbone; quacks like :class:`Backbone` for :func:`resolve_layers`."""

    name: str
    family: str
    layers: list
    default_layer: str
    aliases: dict
    data_config: dict
    shapes: dict = field(default_factory=dict)  # layer -> LayerShape
    digest: str = ""
    head_pool: str | None = None  # how the network pools before its head ("avg", "max", ...), when it does
    architecture: str = ""  # digest of a module backbone's structure (its repr); "" for named backbones

    def dim(self, layer, pooling):
        """Feature size of ``layer`` under ``pooling``; a ``ValueError`` naming both where it does not apply."""
        try:
            return self.shapes[layer].dim(pooling)
        except ValueError as exc:
            raise ValueError(f"layer {layer!r} of backbone {self.name!r}: {exc}") from None

    def applies(self, layer, pooling):
        """Whether ``pooling`` applies to ``layer`` (a class token needs a layer that has one)."""
        try:
            self.shapes[layer].dim(pooling)
        except ValueError:
            return False
        return True


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


def _memo_key(backbone, weights, model_kwargs, seed, input_size):
    if not isinstance(backbone, str):
        return None
    return json.dumps(
        [
            backbone,
            _weights_key(weights),
            model_kwargs or {},
            seed if weights == "random" else None,
            check_input_size(input_size),
        ],
        sort_keys=True,
        default=str,
    )


def head_pool(model):
    """The global pooling a timm model applies before its head (``"avg"``, ``"max"``, ``"token"`` ...).

    ``"token"`` is a ViT's class token; a distilled DeiT averages it with its distillation token
    (``"token+dist"``).
    """
    pool = getattr(model, "global_pool", None)
    kind = getattr(pool, "pool_type", pool)
    if kind == "token" and getattr(model, "dist_token", None) is not None:
        return "token+dist"
    return kind if isinstance(kind, str) and kind else None


def _probe(backbone, input_size):
    """The activation shape of every layer: one blank image through the whole network."""
    extractor = FeatureExtractor(backbone, backbone.layers).eval()
    blank = torch.zeros((1, *backbone.data_config["input_size"]), dtype=torch.uint8)
    try:
        with torch.inference_mode():
            activations = extractor.activations(blank)
    except Exception as exc:
        if input_size is None:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"input_size={input_size!r}: backbone {backbone.name!r} cannot run on "
            f"{tuple(backbone.data_config['input_size'][1:])} inputs ({type(exc).__name__}: {first}). "
            "Choose another size, or leave input_size=None for the size it is built for."
        ) from exc
    return {name: LayerShape.of(a) for name, a in zip(backbone.layers, activations)}


def backbone_info(backbone, weights, model_kwargs, seed, input_size=None):
    """Return the :class:`BackboneInfo` of a backbone configuration, memoised for named backbones.

    A ``torch.nn.Module`` backbone is inspected every time (it may change between calls).
    """
    key = _memo_key(backbone, weights, model_kwargs, seed, input_size)
    if key is not None:
        with _LOCK:
            if key in _MEMO:
                _MEMO.move_to_end(key)
                return _MEMO[key]
    loaded = load_backbone(backbone, weights, model_kwargs, seed=seed, input_size=input_size)
    # The probe reads every layer without pruning anything, so the network stays reusable.
    info = BackboneInfo(
        name=loaded.name,
        family=loaded.family,
        layers=list(loaded.layers),
        default_layer=loaded.default_layer,
        aliases=dict(loaded.aliases),
        data_config=dict(loaded.data_config),
        shapes=_probe(loaded, input_size),
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


def take_loaded(backbone, weights, model_kwargs, seed, input_size, digest):
    """The network :func:`backbone_info` just loaded for this configuration, once; else ``None``."""
    key = _memo_key(backbone, weights, model_kwargs, seed, input_size)
    if key is None:
        return None
    with _LOCK:
        loaded, loaded_digest = _HANDOFF.pop(key, (None, None))
    return loaded if loaded_digest == digest else None
