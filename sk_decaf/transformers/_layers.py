"""``list_layers``: the layer names a backbone offers, for ``DeCAFTransformer(layer=...)``."""

from __future__ import annotations

from typing import Any, Literal, overload

import torch

from .._torch.backbones import load_backbone

__all__ = ["list_layers"]


@overload
def list_layers(
    backbone: str | torch.nn.Module, *, model_kwargs: dict[str, Any] | None = ..., aliases: Literal[False] = ...
) -> list[str]: ...
@overload
def list_layers(
    backbone: str | torch.nn.Module, *, model_kwargs: dict[str, Any] | None = ..., aliases: Literal[True]
) -> tuple[list[str], dict[str, str]]: ...
@overload
def list_layers(
    backbone: str | torch.nn.Module, *, model_kwargs: dict[str, Any] | None = ..., aliases: bool
) -> list[str] | tuple[list[str], dict[str, str]]: ...
def list_layers(
    backbone: str | torch.nn.Module, *, model_kwargs: dict[str, Any] | None = None, aliases: bool = False
) -> list[str] | tuple[list[str], dict[str, str]]:
    """List the layer names that ``DeCAFTransformer(layer=...)`` accepts, in forward order.

    The class logits come last, so ``layer=-1`` is the logits and ``layer=-2`` the pooled pre-logits
    features (Azizpour et al.'s "last", "2nd last", ... layers).

    Parameters
    ----------
    backbone : str or torch.nn.Module
        A timm model name, ``"alexnet"``, ``"torchvision:<name>"`` or a module.
    model_kwargs : dict, default=None
        Extra keyword arguments for the model factory.
    aliases : bool, default=False
        Also return the aliases (for AlexNet: ``decaf1``, ``decaf5``, ``decaf6``, ``decaf7``,
        ``pre_logits``, ``logits``) as a dict ``alias -> layer``.

    Returns
    -------
    layers : list of str
        Layer names, logits last.
    aliases : dict
        Only when ``aliases=True``.

    Examples
    --------
    >>> from sk_decaf import list_layers
    >>> list_layers("alexnet")
    ['conv1', 'pool1', 'conv2', 'pool2', 'conv3', 'conv4', 'conv5', 'pool5', 'fc6', 'fc7', 'fc8']
    >>> list_layers("efficientnet_lite0")[-3:]
    ['blocks.6', 'pre_logits', 'logits']
    """
    # Layer names do not depend on weight values: build with random weights, never download.
    bb = load_backbone(backbone, weights="random", model_kwargs=model_kwargs)
    if aliases:
        return list(bb.layers), dict(bb.aliases)
    return list(bb.layers)
