"""Read pooled activations of named layers in one forward pass.

:class:`FeatureExtractor` wraps a :class:`~sk_decaf._torch.backbones.Backbone`: it takes a uint8 image
batch ``(N, 3, H, W)``, normalises it with the model's mean and std, runs the network only as far as the
deepest requested layer, and returns one ``(N, D)`` float tensor per requested layer. Activations are read
through the model's own feature API where it has one (timm's ``forward_intermediates`` after
``prune_intermediate_layers``; torchvision's ``create_feature_extractor``) and through forward hooks
otherwise.

A transformer layer gives tokens. Every path hands them to :func:`pool` the same way, as :class:`Tokens`:
the patch tokens laid out as their ``(N, C, H, W)`` map, and the prefix tokens (class, register,
distillation) apart, so that ``"avg"``, ``"max"``, ``"flatten"`` and a grid ``k`` read the patches only,
``"cls"`` the class token and ``"cls+avg"`` both (DINOv2's linear probe). timm's ``forward_intermediates``
splits them itself; on the other paths :class:`TokenLayout` reads the split from the network
(``num_prefix_tokens`` and the patch grid of a timm ViT, torchvision's ViT).
"""

from __future__ import annotations

import inspect
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureExtractor", "resolve_layers", "pool", "Tokens", "TokenLayout", "POOLINGS"]

#: The named poolings; an int ``k`` is a ``k x k`` grid of average pools.
POOLINGS = ("avg", "max", "flatten", "cls", "cls+avg")
_CLASS_TOKEN = ("cls", "cls+avg")


@dataclass
class Tokens:
    """The tokens of a transformer layer: the patches as their map, the prefix tokens apart.

    ``patches`` is ``(N, C, H, W)``; ``prefix`` is ``(N, P, C)`` (class, register and distillation tokens,
    in the network's order) or ``None``; ``cls_index`` is the class token's position in ``prefix``.
    """

    patches: torch.Tensor
    prefix: torch.Tensor | None = None
    cls_index: int | None = None


@dataclass(frozen=True)
class TokenLayout:
    """How a network lays out its tokens: ``n_prefix`` tokens first, then the patches row by row.

    Read from the network by :meth:`of`, for the paths that see raw ``(N, tokens, C)`` tensors (FX graphs,
    forward hooks); timm's ``forward_intermediates`` splits them itself the same way.
    """

    n_prefix: int
    has_class_token: bool
    patch_size: tuple
    embed: nn.Module | None = None  # a timm patch embedding, whose dynamic_feat_size gives the grid

    @classmethod
    def of(cls, model):
        """The layout of the first ViT inside ``model`` (timm's or torchvision's), or ``None``."""
        for module in model.modules():
            embed = getattr(module, "patch_embed", None)
            if embed is not None and hasattr(module, "num_prefix_tokens"):  # timm ViT, DeiT, EVA, BEiT ...
                has_cls = getattr(module, "cls_token", None) is not None
                patch = getattr(embed, "patch_size", (1, 1))
                return cls(int(module.num_prefix_tokens), has_cls, tuple(patch), embed)
            if hasattr(module, "class_token") and hasattr(module, "conv_proj"):  # torchvision's ViT
                return cls(1, True, (module.patch_size, module.patch_size))
        return None

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patches' grid for an input of ``height x width``."""
        dynamic = getattr(self.embed, "dynamic_feat_size", None) if self.embed is not None else None
        if callable(dynamic):
            rows, cols = dynamic((height, width))
            return int(rows), int(cols)
        return height // self.patch_size[0], width // self.patch_size[1]

    def split(self, t, height, width):
        """Split ``(N, tokens, C)`` into :class:`Tokens`, as timm's ``forward_intermediates`` does.

        Only when the number of tokens is this layout's for a ``height x width`` input; other activations
        are returned as they are.
        """
        if not torch.is_tensor(t) or t.ndim != 3:
            return t
        h, w = self.grid(height, width)
        n = int(t.shape[1])
        if n == self.n_prefix + h * w:
            prefix = t[:, : self.n_prefix] if self.n_prefix else None
            patches = t[:, self.n_prefix :]
            cls_index = 0 if self.has_class_token and self.n_prefix else None
        elif n == h * w:  # the patch embedding's output, before the prefix tokens join
            prefix, patches, cls_index = None, t, None
        else:
            return t
        return Tokens(patches.reshape(t.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous(), prefix, cls_index)


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
    """Pool an activation to ``(N, D)``: maps and tokens are reduced over space, vectors are kept.

    An int ``k`` average-pools a map into a ``k x k`` grid of torch's adaptive bins (overlapping on maps whose
    size is not a multiple of ``k``); the output is channel-major, feature ``c * k * k + row * k + col``.
    :class:`Tokens` are pooled over their patch map (prefix tokens never count as patches); ``"cls"`` is the
    class token, ``"cls+avg"`` the class token followed by the mean of the patch tokens. A layer without a
    class token (a map, tokens without one) refuses ``"cls"`` and ``"cls+avg"`` with a ``ValueError``.
    """
    if isinstance(t, Tokens):
        if pooling in _CLASS_TOKEN:
            if t.cls_index is None:
                raise ValueError(
                    f"pooling={pooling!r} reads the class token, and this layer's tokens have none "
                    f"({t.patches.shape[1]} channels on a {tuple(t.patches.shape[2:])} grid of patches)."
                )
            assert t.prefix is not None  # a class token is a prefix token
            cls = t.prefix[:, t.cls_index]
            return cls if pooling == "cls" else torch.cat([cls, t.patches.mean(dim=(2, 3))], dim=1)
        return pool(t.patches, pooling)
    if t.ndim == 2:
        return t
    if pooling in _CLASS_TOKEN:
        raise ValueError(
            f"pooling={pooling!r} reads a transformer's class token; this layer gives a {tuple(t.shape[1:])} "
            "activation without one (a convolutional map). Use pooling='avg', 'max', 'flatten' or an int."
        )
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
    if t.ndim == 3:  # (N, tokens, C) of a network whose token layout is not known
        if pooling == "avg":
            return t.mean(dim=1)
        if pooling == "max":
            return t.amax(dim=1)
        if pooling == "flatten":
            return t.flatten(1)
        raise ValueError(
            f"pooling={pooling} (a grid) needs a spatial map; this layer gives {tuple(t.shape[1:])} tokens "
            "whose layout (prefix tokens, grid of patches) is not known from the network."
        )
    return t.flatten(1)


def _final_features(model, x, layout, height, width):
    """``forward_features``' output as a tap: tokens split by ``layout``, NHWC maps (Swin) as NCHW."""
    if x.ndim == 4 and getattr(model, "output_fmt", "NCHW") == "NHWC":
        return x.permute(0, 3, 1, 2)
    return layout.split(x, height, width) if layout is not None else x


class _TimmTaps(nn.Module):
    """timm models: ``forward_intermediates`` for stages, ``forward_features`` for ``norm``, then the head."""

    def __init__(self, model, layers, stages):
        super().__init__()
        self.stage_index = {name: stages.index(name) for name in layers if name in stages}
        self.need_head = any(name in ("pre_logits", "logits") for name in layers)
        self.need_final = self.need_head or "norm" in layers
        self.layers = list(layers)
        indices = sorted(self.stage_index.values())
        if indices and not self.need_final:
            # Drop every block after the deepest tap, and the head: they are never run.
            model.prune_intermediate_layers(indices, prune_head=True)
        self.indices = indices
        self.model = model
        self.layout = TokenLayout.of(model)
        self.cls_index = 0 if self.layout is not None and self.layout.has_class_token else None
        # ViT-like models return their prefix tokens beside the patch map when asked.
        prefix = self.layout is not None and self.layout.n_prefix > 0
        self.options = {"return_prefix_tokens": True} if prefix and _takes(model, "return_prefix_tokens") else {}

    def _tap(self, t):
        if isinstance(t, (tuple, list)):  # (patch map, prefix tokens)
            return Tokens(t[0], t[1], self.cls_index)
        return t

    def forward(self, x):
        found = {}
        height, width = int(x.shape[-2]), int(x.shape[-1])
        if self.indices:
            if self.need_final:
                x, inter = self.model.forward_intermediates(x, indices=self.indices, **self.options)
            else:
                inter = self.model.forward_intermediates(
                    x, indices=self.indices, intermediates_only=True, stop_early=True, **self.options
                )
            by_index = dict(zip(self.indices, inter))
            for name, idx in self.stage_index.items():
                found[name] = self._tap(by_index[idx])
        elif self.need_final:
            x = self.model.forward_features(x)
        if "norm" in self.layers:
            found["norm"] = _final_features(self.model, x, self.layout, height, width)
        if self.need_head:
            pre = self.model.forward_head(x, pre_logits=True)
            found["pre_logits"] = pre
            if "logits" in self.layers:
                head = self.model.get_classifier()
                # A distilled DeiT has two heads (a tuple) averaged by forward_head: run the head itself then.
                found["logits"] = head(pre) if isinstance(head, nn.Module) else self.model.forward_head(x)
        return [found[name] for name in self.layers]


def _takes(model, argument):
    try:
        return argument in inspect.signature(model.forward_intermediates).parameters
    except (TypeError, ValueError):
        return False


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
    pooling : {"avg", "max", "flatten", "cls", "cls+avg"} or int
        How maps and tokens become vectors (see :func:`pool`); an int ``k`` average-pools to a ``k x k`` grid.
    """

    def __init__(self, backbone, layers, pooling="avg"):
        super().__init__()
        cfg = backbone.data_config
        self.register_buffer("mean", torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1) * 255))
        self.layers: list[str] = list(layers)
        self.pooling = pooling
        self.taps: _TimmTaps | _GraphTaps | _HookTaps
        self.layout: TokenLayout | None = None  # timm's forward_intermediates splits the tokens itself
        if backbone.family == "timm":
            stages = [n for n in backbone.layers if n not in ("norm", "pre_logits", "logits")]
            self.taps = _TimmTaps(backbone.model, layers, stages)
        else:
            if backbone.family in ("alexnet", "torchvision"):
                self.taps = _GraphTaps(backbone.model, layers, backbone.nodes)
            else:
                self.taps = _HookTaps(backbone.model, layers)
            self.layout = TokenLayout.of(backbone.model)
        self.channels_last = False

    def activations(self, images):
        """The requested layers' activations before pooling: tensors, or :class:`Tokens` for token layers."""
        # (x / 255 - mean) / std, folded into one subtract and one multiply.
        x = (images.float() - self.mean) * self.inv_std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        taps = self.taps(x)
        if self.layout is not None:
            height, width = int(x.shape[-2]), int(x.shape[-1])
            taps = [self.layout.split(t, height, width) for t in taps]
        return taps

    def forward(self, images):
        return tuple(pool(t, self.pooling).float() for t in self.activations(images))
