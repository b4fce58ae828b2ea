"""What a fitted DeCAFTransformer computes, and where: resolved once, in ``fit`` and again after unpickling.

The estimator validates its parameters and hands them here:

* :func:`resolve` gives a :class:`Resolution`: the layers computed per pass, the placement (device, the
  precision actually computed, engine: :func:`place`) and the activation description with its digest, which
  keys both the activation cache and the exported ONNX graph;
* :func:`Resolution.replaced` places it again after unpickling (``"auto"`` may mean another machine's
  device), through the same :func:`place`;
* :class:`Network` loads the network the first time an image needs it, and checks its weights' digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .._torch import quantize
from .._torch.backbones import load_backbone, state_digest
from .._torch.catalog import BackboneInfo, take_loaded
from .._torch.device import resolve_device
from .._torch.engines import graph_dir, onnxruntime_available
from .._torch.featurizer import Featurizer
from .._torch.layers import resolve_layers

__all__ = [
    "AUTO_CACHE_MAX_DIM",
    "FittedDeCAF",
    "KEY_EXEMPT_PARAMS",
    "Network",
    "Placement",
    "Resolution",
    "check_pooling",
    "place",
    "resolve",
]

#: With ``cache_layers="auto"``, layers whose pooled vector is at most this long are stored on every pass.
AUTO_CACHE_MAX_DIM = 16384

#: Parameters that cannot change an image's activations, with the reason. Every other parameter joins the
#: activation description that keys the cache and the exported ONNX graph, so a new parameter is part of the
#: keys unless it is added here on purpose (tests/transformers/test_keys.py checks both directions).
KEY_EXEMPT_PARAMS = {
    "layer": "the cache stores each layer under its own name; the ONNX key lists the computed layers",
    "device": "the same float32 network on another device (precision is keyed as resolved)",
    "batch_size": "batches do not interact in eval mode",
    "n_jobs": "only where images are decoded",
    "verbose": "progress display",
    "cache": "where activations are stored",
    "cache_max_bytes": "how many are kept",
    "cache_layers": "which layers are stored, each under its own name",
    "engine": "onnxruntime is checked against torch on first use (relative error <= 1e-4); int8 is a precision",
    "on_error": "what happens to bad items, which are never cached",
    "weights": "replaced by the digest of the loaded weights",
    "random_state": "replaced by the digest of the loaded (random) weights",
    "backbone": "replaced by the resolved name, family and, for modules, the structure digest",
    "precision": "replaced by the precision actually computed",
    "input_size": "replaced by the input size the network takes, in the data configuration (None and 224 on a "
    "224 network share a key, and caches filled before input_size existed keep their hits)",
}


@dataclass(frozen=True)
class Placement:
    """Where and how the network runs: the device, the engine and the precision computed there."""

    device: torch.device
    engine: str  # "torch" or "onnxruntime"
    precision: str  # "float32", "bfloat16" (torch) or "int8" (onnxruntime)


class FittedDeCAF(Protocol):
    """What the network loader and a transform call read of a fitted :class:`~sk_decaf.DeCAFTransformer`.

    A structural type, so that this module and ``_extract.py`` need not import the estimator's module.
    """

    @property
    def backbone(self) -> str | torch.nn.Module: ...
    @property
    def weights(self) -> str | os.PathLike[str] | None: ...
    @property
    def model_kwargs(self) -> dict[str, Any] | None: ...
    @property
    def pooling(self) -> str | int: ...
    @property
    def input_size(self) -> int | tuple[int, int] | None: ...
    @property
    def preprocess(self) -> str: ...
    @property
    def decode(self) -> str: ...
    @property
    def tta(self) -> str | None: ...
    @property
    def tta_reduce(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def n_jobs(self) -> int | None: ...
    @property
    def verbose(self) -> bool | int: ...
    @property
    def cache(self) -> str | os.PathLike[str] | None: ...
    @property
    def cache_max_bytes(self) -> int | None: ...
    @property
    def on_error(self) -> str: ...
    @property
    def random_seed_(self) -> int: ...
    @property
    def weights_digest_(self) -> str: ...
    @property
    def layers_(self) -> list[str]: ...
    @property
    def feature_dims_(self) -> dict[str, int]: ...
    @property
    def _resolution(self) -> Resolution: ...
    @property
    def _network(self) -> Network: ...


def place(params: Mapping[str, Any], family: str) -> Placement:
    """Resolve ``device``, ``precision`` and ``engine`` of the parameters for a backbone ``family``.

    ``precision="auto"`` is bf16 autocast on CUDA and float32 elsewhere (never int8, never bfloat16 on the CPU:
    no user's features change silently). ``engine="auto"`` is onnxruntime on the CPU for float32 named
    backbones when onnxruntime is installed, torch otherwise. ``precision="int8"`` runs only on onnxruntime,
    on the CPU (``engine="auto"`` picks it); ``"bfloat16"`` only on torch (onnxruntime has no bfloat16
    convolution on the CPU).
    """
    device = resolve_device(params["device"])
    precision = params["precision"]
    if precision == "auto":
        precision = "bfloat16" if device.type == "cuda" else "float32"
    engine = params["engine"]
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(
                f"precision='int8' runs on the CPU, with onnxruntime; got device {str(device)!r}. On "
                f"{device.type}, use precision='auto' (bfloat16) or 'float32'."
            )
        if engine == "torch":
            raise ValueError(
                "precision='int8' runs on the onnxruntime engine, not engine='torch'; use engine='auto' or "
                "'onnxruntime' with it, or precision='float32' or 'bfloat16' with engine='torch'."
            )
        if not onnxruntime_available():
            raise ImportError("precision='int8' needs onnxruntime: pip install 'sk-decaf[onnx]'.")
        return Placement(device, "onnxruntime", precision)
    if engine == "onnxruntime":
        if not onnxruntime_available():
            raise ImportError("engine='onnxruntime' needs onnxruntime: pip install 'sk-decaf[onnx]'.")
        if device.type != "cpu":
            raise ValueError(f"engine='onnxruntime' runs on the CPU; got device {str(device)!r}.")
        if precision != "float32":
            raise ValueError(
                f"engine='onnxruntime' computes in float32 or int8 (onnxruntime has no bfloat16 convolution on "
                f"the CPU); use engine='torch' or 'auto' for precision={precision!r}."
            )
    elif engine == "auto":
        cpu_float32 = device.type == "cpu" and precision == "float32"
        engine = "onnxruntime" if cpu_float32 and family != "module" and onnxruntime_available() else "torch"
    return Placement(device, engine, precision)


def activation_identity(params: Mapping[str, Any], info: BackboneInfo) -> dict[str, Any]:
    """Everything that changes the activations except the precision computed (see :func:`cache_key`)."""
    identity = {name: value for name, value in params.items() if name not in KEY_EXEMPT_PARAMS}
    identity["model_kwargs"] = dict(sorted((params.get("model_kwargs") or {}).items()))
    identity.update(
        backbone=info.name,
        family=info.family,
        architecture=info.architecture,
        weights=info.digest,
        data_config={
            k: info.data_config.get(k) for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        },
    )
    return identity


@dataclass(frozen=True)
class Resolution:
    """What a fitted transformer computes: its layers per pass, its placement and the activation description."""

    family: str
    identity: dict[str, Any]  # everything that changes the activations, except the precision (activation_identity)
    compute: list[str]  # the requested layers, then the extra layers stored in the cache on every pass
    placement: Placement
    description: dict[str, Any]  # identity and the precision computed: keys the cache and the ONNX graph
    key: str  # digest of the description

    @classmethod
    def of(cls, family: str, identity: dict[str, Any], compute: Sequence[str], params: Mapping[str, Any]) -> Resolution:
        placement = place(params, family)
        description = dict(identity, precision=placement.precision)
        if placement.precision == "int8":  # what the int8 network depends on besides the float32 one
            description["int8"] = quantize.identity()
        key = hashlib.sha256(json.dumps(description, sort_keys=True, default=repr).encode()).hexdigest()[:32]
        return cls(family, identity, list(compute), placement, description, key)

    def replaced(self, params: Mapping[str, Any]) -> Resolution:
        """The same computation placed again for ``params`` on this machine (after unpickling)."""
        return Resolution.of(self.family, self.identity, self.compute, params)


def resolve(params: Mapping[str, Any], info: BackboneInfo, layers: Sequence[str]) -> Resolution:
    """The :class:`Resolution` of a transformer's parameters for a backbone (:class:`BackboneInfo`)."""
    compute = compute_layers(params["cache"], params["cache_layers"], layers, info, params["pooling"])
    return Resolution.of(info.family, activation_identity(params, info), compute, params)


def check_pooling(pooling: str | int, layers: Sequence[str], info: BackboneInfo) -> None:
    """Refuse a ``pooling`` that does not apply to a requested layer, naming ``pooling``.

    A class token (``"cls"``, ``"cls+avg"``) needs a transformer layer that has one. A timm model's
    ``pre_logits`` and ``logits`` are pooled by the network itself: there ``"avg"`` (the default) means the
    network's own pooling, and another ``pooling`` is accepted only where it is that pooling (``"cls"`` for
    a ViT that reads its class token, ``"max"`` for ``global_pool="max"``); it would silently not apply.
    """
    for name in layers:
        info.dim(name, pooling)  # a ValueError naming the layer and pooling where it does not apply
    head = [name for name in layers if name in ("pre_logits", "logits")]
    own = "token" if pooling == "cls" else pooling
    if info.family != "timm" or not head or pooling == "avg" or own == info.head_pool:
        return
    spatial = [n for n in info.layers if n not in ("pre_logits", "logits")]
    raise ValueError(
        f"pooling={pooling!r} cannot apply to {head[0]!r}: the network pools it itself "
        f"({info.head_pool!r} global pooling) before its head. Use pooling='avg' with it, request a spatial "
        f"layer ({spatial[-1]!r}) for pooling={pooling!r}, or change the network's own pooling with "
        "model_kwargs={'global_pool': 'max'}."
    )


def compute_layers(
    cache: object,
    cache_layers: str | Sequence[str | int],
    layers: Sequence[str],
    info: BackboneInfo,
    pooling: str | int = "avg",
) -> list[str]:
    """Requested layers plus the extra layers stored in the cache on every pass.

    ``"auto"`` and ``"all"`` add only the layers that ``pooling`` applies to (a class token needs a token
    layer); a layer named in a list must take it.
    """
    if cache is None or cache_layers == "requested":
        return list(layers)
    if isinstance(cache_layers, list):
        try:
            extra = resolve_layers(cache_layers, info)
            for name in extra:
                info.dim(name, pooling)
        except ValueError as exc:
            raise ValueError(f"cache_layers: {exc}") from None
    elif cache_layers == "all":
        extra = [name for name in info.layers if info.applies(name, pooling)]
    else:  # "auto": every layer small enough once pooled
        extra = [
            name
            for name in info.layers
            if info.applies(name, pooling) and info.dim(name, pooling) <= AUTO_CACHE_MAX_DIM
        ]
    return list(layers) + [name for name in extra if name not in layers]


_LOAD_LOCK = threading.RLock()


class Network:
    """The network of one fitted transformer, loaded on first use and kept for the transformer's life.

    It is never pickled: an unpickled transformer reloads the weights when an image first needs them, and
    their digest must match the one seen in ``fit``.
    """

    def __init__(self) -> None:
        self.featurizer: Featurizer | None = None

    def get(self, est: FittedDeCAF) -> Featurizer:
        """The :class:`~sk_decaf._torch.featurizer.Featurizer` of the fitted transformer ``est``.

        Threads that transform with one transformer at the same time load its network once, and networks load
        one at a time (random weights are drawn from torch's global generator, seeded per network).
        """
        if self.featurizer is None:
            with _LOAD_LOCK:  # one load at a time: random weights are seeded through torch's global RNG
                if self.featurizer is None:
                    self.featurizer = self._load(est)
        return self.featurizer

    @staticmethod
    def _load(est: FittedDeCAF) -> Featurizer:
        spec = (est.backbone, est.weights, est.model_kwargs, est.random_seed_, est.input_size)
        backbone = take_loaded(*spec, est.weights_digest_)
        if backbone is None:
            backbone = load_backbone(
                est.backbone, est.weights, est.model_kwargs, seed=est.random_seed_, input_size=est.input_size
            )
            digest = state_digest(backbone.model)
            if digest != est.weights_digest_:
                raise ValueError(
                    f"The weights of backbone {backbone.name!r} changed since this transformer was fitted "
                    f"(digest {digest} != {est.weights_digest_}); refit it."
                )
        resolution = est._resolution
        placement = resolution.placement
        return Featurizer(
            backbone,
            resolution.compute,
            pooling=est.pooling,
            preprocess=est.preprocess,
            device=placement.device,
            engine=placement.engine,
            precision=placement.precision,
            identity=resolution.description,
            onnx_dir=graph_dir(),
            decode=est.decode,
            tta=est.tta,
            tta_reduce=est.tta_reduce,
        )
