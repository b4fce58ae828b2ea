"""Read pooled activations of named layers in one forward pass.

:class:`FeatureExtractor` wraps a :class:`~sk_decaf._torch.backbones.Backbone`: it takes a uint8 image
batch ``(N, 3, H, W)``, normalises it with the model's mean and std, runs the network only as far as the
deepest requested layer, and returns one ``(N, D)`` float tensor per requested layer. Activations are read
through the model's own feature API where it has one (timm's ``forward_intermediates`` after
``prune_intermediate_layers``; torchvision's ``create_feature_extractor``) and through forward hooks
otherwise.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureExtractor", "resolve_layers", "pool"]


def resolve_layers(layer, backbone):
    """Map a ``layer`` parameter (name, alias, negative int, list, or None) to canonical names."""
    names, aliases = backbone.layers, backbone.aliases
    specs = layer if isinstance(layer, (list, tuple)) else [layer]
    if not specs:
        raise ValueError("layer must not be an empty list.")
    out = []
    for spec in specs:
        if spec is None:
            name = backbone.default_layer
        elif isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
            index = int(spec)
            if not -len(names) <= index < 0:
                raise ValueError(
                    f"layer={spec}: integer layers count back from the logits (-1) and must lie in "
                    f"[-{len(names)}, -1] for backbone {backbone.name!r}."
                )
            name = names[index]
        elif isinstance(spec, str):
            name = aliases.get(spec, spec)
            if name not in names:
                raise ValueError(
                    f"Unknown layer {spec!r} for backbone {backbone.name!r}. Available layers: {names}"
                    + (f"; aliases: {sorted(aliases)}" if aliases else "")
                )
        else:
            raise ValueError(f"layer must be a name, a negative int, a list of them or None; got {spec!r}.")
        if name in out:
            raise ValueError(f"layer {spec!r} is requested twice (as {name!r}).")
        out.append(name)
    return out


def _grid_pool(t, k):
    """``adaptive_avg_pool2d(t, k)`` written as static slices and means, which ONNX can export.

    The bins are torch's: row ``i`` spans ``[floor(i * H / k), ceil((i + 1) * H / k))``, so they overlap
    when ``H`` is not a multiple of ``k``. The map size is fixed by the input size, so the bins are constants.
    """
    h, w = int(t.shape[2]), int(t.shape[3])
    rows = [(i * h // k, -(-(i + 1) * h // k)) for i in range(k)]
    cols = [(j * w // k, -(-(j + 1) * w // k)) for j in range(k)]
    cells = [t[:, :, r0:r1, c0:c1].mean(dim=(2, 3)) for r0, r1 in rows for c0, c1 in cols]
    return torch.stack(cells, dim=2).flatten(1)  # channel-major: c * k * k + row * k + col


def _export_grid_pool(t, k):
    """``adaptive_avg_pool2d(t, k).flatten(1)`` in operations the ONNX exporter converts on every map size.

    The exporter's own ``adaptive_avg_pool2d`` needs static input sizes, which a dynamic batch axis hides, so
    it refuses even maps that are a multiple of ``k``. There the bins are equal and disjoint: an average pool
    with a fixed kernel. Otherwise (overlapping bins, or ``k`` larger than the map) the bins are static slices.
    """
    h, w = int(t.shape[2]), int(t.shape[3])
    if h % k == 0 and w % k == 0:
        return F.avg_pool2d(t, (h // k, w // k)).flatten(1)
    return _grid_pool(t, k)


def pool(t, pooling):
    """Pool an activation to ``(N, D)``: 4-D maps and 3-D token sequences are reduced over space.

    An int ``k`` average-pools a map into a ``k x k`` grid of torch's adaptive bins (overlapping on maps whose
    size is not a multiple of ``k``); the output is channel-major, feature ``c * k * k + row * k + col``.
    """
    if t.ndim == 2:
        return t
    if t.ndim == 4:
        if pooling == "avg":
            return t.mean(dim=(2, 3))
        if pooling == "max":
            return t.amax(dim=(2, 3))
        if pooling == "flatten":
            return t.flatten(1)
        if torch.onnx.is_in_onnx_export():
            return _export_grid_pool(t, pooling)
        return F.adaptive_avg_pool2d(t, pooling).flatten(1)
    if t.ndim == 3:  # (N, tokens, C)
        if pooling == "avg":
            return t.mean(dim=1)
        if pooling == "max":
            return t.amax(dim=1)
        if pooling == "flatten":
            return t.flatten(1)
        raise ValueError(f"pooling={pooling} (a grid) needs a spatial map; this layer gives tokens {tuple(t.shape)}.")
    return t.flatten(1)


class _TimmTaps(nn.Module):
    """timm models: ``forward_intermediates`` for stage taps, ``forward_head`` for the head."""

    def __init__(self, model, layers, stages):
        super().__init__()
        self.stage_index = {name: stages.index(name) for name in layers if name in stages}
        self.need_head = any(name in ("pre_logits", "logits") for name in layers)
        self.layers = list(layers)
        indices = sorted(self.stage_index.values())
        if indices and not self.need_head:
            # Drop every block after the deepest tap, and the head: they are never run.
            model.prune_intermediate_layers(indices, prune_head=True)
        self.indices = indices
        self.model = model

    def forward(self, x):
        found = {}
        if self.indices:
            if self.need_head:
                x, inter = self.model.forward_intermediates(x, indices=self.indices)
            else:
                inter = self.model.forward_intermediates(
                    x, indices=self.indices, intermediates_only=True, stop_early=True
                )
            by_index = dict(zip(self.indices, inter))
            for name, idx in self.stage_index.items():
                found[name] = by_index[idx]
        elif self.need_head:
            x = self.model.forward_features(x)
        if self.need_head:
            pre = self.model.forward_head(x, pre_logits=True)
            found["pre_logits"] = pre
            if "logits" in self.layers:
                found["logits"] = self.model.get_classifier()(pre)
        return [found[name] for name in self.layers]


class _GraphTaps(nn.Module):
    """FX-traceable models (AlexNet, torchvision): ``create_feature_extractor`` prunes the graph.

    Each tap is copied the moment it is computed, so a later in-place operation (AlexNet's
    ``ReLU(inplace=True)`` after ``classifier.1``) cannot change it.
    """

    def __init__(self, model, layers, nodes):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.layers = list(layers)
        self.graph = _copy_taps(create_feature_extractor(model, return_nodes={nodes[n]: n for n in layers}))

    def forward(self, x):
        out = self.graph(x)
        return [out[name] for name in self.layers]


def _copy_taps(graph_module):
    """Insert a ``clone`` right after every node the graph returns and return the copies instead."""
    graph = graph_module.graph
    output = next(node for node in graph.nodes if node.op == "output")
    copies, returned = {}, {}
    for name, node in output.args[0].items():
        if node not in copies:
            with graph.inserting_after(node):
                copies[node] = graph.call_method("clone", (node,))
        returned[name] = copies[node]
    output.args = (returned,)
    graph.lint()
    graph_module.recompile()
    return graph_module


class _StopForward(Exception):
    pass


class _HookTaps(nn.Module):
    """Any module: forward hooks; the forward pass is cut as soon as every tap has fired.

    Hooks live only for the duration of one forward call, so the user's module is left untouched.
    """

    def __init__(self, model, layers):
        super().__init__()
        self.model = model
        self.layers = list(layers)
        self._taps = [n for n in layers if n != "logits"]

    def forward(self, x):
        store = {}

        def hook_for(name):
            def hook(module, args, output):
                store[name] = output.clone()  # immune to later in-place operations on the output
                if "logits" not in self.layers and len(store) == len(self._taps):
                    raise _StopForward

            return hook

        modules = dict(self.model.named_modules())
        handles = [modules[name].register_forward_hook(hook_for(name)) for name in self._taps]
        try:
            store["logits"] = self.model(x)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return [store[name] for name in self.layers]


class FeatureExtractor(nn.Module):
    """uint8 images in, one pooled ``(N, D)`` float tensor per requested layer out.

    Parameters
    ----------
    backbone : Backbone
        The loaded network; its model may be pruned in place.
    layers : list of str
        Canonical layer names (see :func:`resolve_layers`).
    pooling : {"avg", "max", "flatten"} or int
        How spatial maps become vectors; an int ``k`` average-pools to a ``k x k`` grid.
    """

    def __init__(self, backbone, layers, pooling="avg"):
        super().__init__()
        cfg = backbone.data_config
        self.register_buffer("mean", torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1) * 255))
        self.layers: list[str] = list(layers)
        self.pooling = pooling
        self.taps: _TimmTaps | _GraphTaps | _HookTaps
        if backbone.family == "timm":
            stages = [n for n in backbone.layers if n not in ("pre_logits", "logits")]
            self.taps = _TimmTaps(backbone.model, layers, stages)
        elif backbone.family in ("alexnet", "torchvision"):
            self.taps = _GraphTaps(backbone.model, layers, backbone.nodes)
        else:
            self.taps = _HookTaps(backbone.model, layers)
        self.channels_last = False

    def forward(self, images):
        # (x / 255 - mean) / std, folded into one subtract and one multiply.
        x = (images.float() - self.mean) * self.inv_std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return tuple(pool(t, self.pooling).float() for t in self.taps(x))
