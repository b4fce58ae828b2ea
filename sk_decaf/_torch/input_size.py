"""The input size of a network: read from the network itself, checked, and changed.

``DeCAFTransformer(input_size=...)`` lands here. The size a network expects is read from the network (a
ViT's ``patch_embed.img_size``, a model's ``img_size`` or torchvision's ``image_size``), not from its
pretrained configuration, which a network built with ``model_kwargs={"img_size": 224}`` or given as a module
contradicts. A new size is given to a ViT-like network through timm's own ``set_input_size`` (which resamples
its absolute position embeddings with ``resample_abs_pos_embed``, and a Swin's windows), or by building it
again for that size where it has none; a convolutional network takes any size, so only its preprocessing
changes (resize and centre crop at the same ``crop_pct``). A size that a ViT cannot cut into patches is a
``ValueError`` that names ``input_size`` and sizes it takes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

Size = tuple[int, int]

__all__ = ["check_input_size", "network_input_size", "resize", "with_input_size", "fit_position_embeddings"]


def fit_position_embeddings(model: nn.Module, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Resample the absolute position embeddings of a state dict saved for another grid of patches.

    A ViT saved at 518 (a 37x37 grid) loads into the same ViT built at 224 (16x16) as timm loads pretrained
    weights: ``timm.layers.resample_abs_pos_embed``, prefix tokens (class, registers) kept as they are.
    """
    from timm.layers import resample_abs_pos_embed

    target = model.state_dict()
    modules = dict(model.named_modules())
    out = dict(state_dict)
    for key, value in state_dict.items():
        if not key.endswith("pos_embed") or key not in target or target[key].shape == value.shape or value.ndim != 3:
            continue
        owner = modules.get(key.rpartition(".")[0])
        grid = getattr(getattr(owner, "patch_embed", None), "grid_size", None)
        if grid is None or value.shape[2] != target[key].shape[2]:
            continue  # not a timm ViT's embedding: the strict load reports the mismatch
        n_prefix = 0 if getattr(owner, "no_embed_class", False) else int(getattr(owner, "num_prefix_tokens", 0))
        side = math.isqrt(value.shape[1] - n_prefix)
        if side * side != value.shape[1] - n_prefix:
            continue
        out[key] = resample_abs_pos_embed(
            value, new_size=list(grid), old_size=[side, side], num_prefix_tokens=n_prefix, verbose=False
        )
    return out


def check_input_size(input_size: Any) -> Size | None:
    """``input_size`` as ``(height, width)``, or ``None``: an int is the side of a square."""
    if input_size is None:
        return None
    if isinstance(input_size, numbers.Integral) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    if (
        isinstance(input_size, (tuple, list))
        and len(input_size) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) > 0 for v in input_size)
    ):
        return int(input_size[0]), int(input_size[1])
    raise ValueError(
        f"input_size must be None, a positive int (the side of a square input) or a (height, width) pair of "
        f"positive ints; got {input_size!r}."
    )


def _pair(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, numbers.Integral) for v in value):
        return int(value[0]), int(value[1])
    return None


def _declared_size(module):
    embed = getattr(module, "patch_embed", None)
    for owner, attr in ((embed, "img_size"), (module, "img_size"), (module, "image_size")):
        size = _pair(getattr(owner, attr, None)) if owner is not None else None
        if size is not None:
            return size
    return None


def _sized_module(model):
    """The network, or the first module inside it (a ViT in a wrapper), that is built for one input size."""
    return next((m for m in model.modules() if _declared_size(m) is not None), None)


def network_input_size(model: nn.Module) -> Size | None:
    """The ``(height, width)`` a network is built for, read from the network; ``None`` if it takes any size.

    A timm ViT-like model's patch embedding (``patch_embed.img_size``), else the model's own ``img_size``
    (timm's MaxViT, CrossViT) or ``image_size`` (torchvision's ViT), on the network or the first module
    inside it that has one (a ViT wrapped in another module). Convolutional networks have none.
    """
    owner = _sized_module(model)
    return None if owner is None else _declared_size(owner)


def _patch_size(model):
    """The patch size a ViT-like network's input must be a multiple of, or ``None`` (any size, or padded)."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None:
        if getattr(embed, "dynamic_img_pad", False):
            return None
        return _pair(getattr(embed, "patch_size", None))
    return _pair(getattr(model, "patch_size", None)) if hasattr(model, "image_size") else None  # torchvision ViT


def _size_text(size):
    return f"{size[0]}" if size[0] == size[1] else f"({size[0]}, {size[1]})"


def _check_patch_multiple(model, size, label):
    """A ViT cuts its input into patches: a size that is not a multiple of the patch size is refused."""
    patch = _patch_size(model)
    if patch is None or all(s % p == 0 for s, p in zip(size, patch)):
        return
    native = network_input_size(model)
    examples = sorted(
        {
            max(1, size[0] // patch[0]) * patch[0],
            (size[0] // patch[0] + 1) * patch[0],
            *([native[0]] if native and native[0] % patch[0] == 0 else []),
        }
    )
    which = f"multiples of {patch[0]}" if patch[0] == patch[1] else f"multiples of {patch} (height, width)"
    raise ValueError(
        f"input_size={_size_text(size)} does not fit {label}: a ViT cuts its input into {patch[0]}x{patch[1]} "
        f"patches, so it takes {which}, such as {', '.join(map(str, examples))}."
    )


def resize(
    model: nn.Module, size: Size | None, label: str, rebuild: Callable[[Size], nn.Module] | None = None
) -> nn.Module:
    """Make ``model`` take ``size`` inputs; return it, or the network ``rebuild(size)`` builds.

    Networks that take any size (convolutional ones) are left as they are: only the preprocessing changes.
    ViT-like networks (or the ViT inside a wrapper) are resized with timm's ``set_input_size``, which
    resamples the absolute position embeddings (and a Swin's windows); others that are built for one size
    are rebuilt by ``rebuild``.
    """
    owner = _sized_module(model)
    current = None if owner is None else _declared_size(owner)
    fixed = bool((getattr(model, "pretrained_cfg", None) or {}).get("fixed_input_size"))
    if size is None or current == size or (current is None and not fixed):
        return model
    owner = model if owner is None else owner
    _check_patch_multiple(owner, size, label)
    set_input_size = getattr(owner, "set_input_size", None)
    if callable(set_input_size):
        set_input_size(img_size=size)
        return model
    if rebuild is not None and owner is model:
        return rebuild(size)
    raise ValueError(
        f"input_size={_size_text(size)}: {label} is built for {_size_text(current or size)} inputs and cannot "
        "be resized (it has no set_input_size); build the module for that size (e.g. timm's img_size=...) "
        "and leave input_size=None."
    )


def with_input_size(data_config: Mapping[str, Any], model: nn.Module, size: Size | None) -> dict[str, Any]:
    """The data config with the input size the network takes: the requested one, else the network's own."""
    size = size or network_input_size(model)
    config = dict(data_config)
    if size is not None:
        config["input_size"] = (3, *size)
    return config
