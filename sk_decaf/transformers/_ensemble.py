"""Several backbones as one feature extractor: one normalised DeCAF branch per backbone, concatenated."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from typing import Any

import torch
from sklearn.base import BaseEstimator
from sklearn.pipeline import FeatureUnion, Pipeline

from ._decaf import DeCAFTransformer
from ._signed_sqrt import SignedSqrt

__all__ = ["make_ensemble"]


def _branch_name(backbone: str | torch.nn.Module, taken: Collection[str]) -> str:
    """The backbone's name (a module's class name), made unique among ``taken`` as make_union does."""
    name = backbone if isinstance(backbone, str) else type(backbone).__name__.lower()
    name = name.replace("__", "_")  # "__" separates nested parameter names
    unique, k = name, 1
    while unique in taken:
        k += 1
        unique = f"{name}-{k}"
    return unique


def make_ensemble(
    *backbones: str | torch.nn.Module,
    layer: str | int | Sequence[str | int] | None = None,
    tta: str | None = None,
    tta_reduce: str = "mean",
    cache: str | os.PathLike[str] | None = None,
    signed_sqrt: bool = True,
    decaf_params: dict[str, Any] | None = None,
) -> FeatureUnion:
    """Concatenate the DeCAF features of several backbones, each normalised on its own.

    A shortcut for scikit-learn's :func:`~sklearn.pipeline.make_union` of one
    ``DeCAFTransformer -> SignedSqrt`` pipeline per backbone, sharing every
    setting, with each branch named after its backbone. Each branch is
    normalised to unit length before the concatenation, so every backbone
    weighs the same in a linear classifier whatever its feature scale or
    dimension (the combined representations of Azizpour et al. 2015, §5).

    Parameters
    ----------
    *backbones : str or torch.nn.Module
        One branch per backbone, in output order, e.g.
        ``"efficientnet_lite0", "efficientnet_lite2"``.
    layer : str, int, list or None, default=None
        ``DeCAFTransformer``'s ``layer``, the same for every backbone (None: each
        backbone's generic layer, the pooled pre-logits of timm models).
    tta : {None, "flip", "10crop", "12jitter"}, default=None
        ``DeCAFTransformer``'s test-time augmentation, for every backbone.
    tta_reduce : {"mean", "max"}, default="mean"
        How the views' features are combined.
    cache : None, str or path-like, default=None
        One activation cache file shared by every branch (each backbone and
        setting is stored under its own key).
    signed_sqrt : bool, default=True
        Put a :class:`~sk_decaf.SignedSqrt` (L2, signed square root, L2) after
        each ``DeCAFTransformer``. False leaves the raw activations, whose
        scales differ between backbones.
    decaf_params : dict, default=None
        Further ``DeCAFTransformer`` parameters for every branch, e.g.
        ``{"device": "cpu", "batch_size": 64}``.

    Returns
    -------
    union : sklearn.pipeline.FeatureUnion
        Branches named after the backbones (``"efficientnet_lite0"``, a second
        occurrence ``"efficientnet_lite0-2"``), each a ``Pipeline`` of
        ``("decaf", DeCAFTransformer)`` and ``("signed_sqrt", SignedSqrt)``, or
        the ``DeCAFTransformer`` alone with ``signed_sqrt=False``. Parameters are
        reached as usual, e.g. ``efficientnet_lite0__decaf__tta``.

    See Also
    --------
    sk_decaf.DeCAFTransformer : One backbone.
    sk_decaf.SignedSqrt : The normalisation of each branch.
    sklearn.pipeline.make_union : The general construction, for branches that differ in more than the backbone.

    References
    ----------
    .. [1] H. Azizpour, A. S. Razavian, J. Sullivan, A. Maki and S. Carlsson. From Generic to Specific Deep
       Representations for Visual Recognition. CVPR Workshops 2015.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.svm import LinearSVC
    >>> from sk_decaf import make_ensemble
    >>> features = make_ensemble("efficientnet_lite0", "efficientnet_lite2", tta="flip")
    >>> [name for name, _ in features.transformer_list]
    ['efficientnet_lite0', 'efficientnet_lite2']
    >>> features.get_params()["efficientnet_lite2__decaf__tta"]
    'flip'
    >>> model = make_pipeline(features, LinearSVC())
    >>> model.fit(train_paths, train_labels)  # doctest: +SKIP
    """
    if not backbones:
        raise ValueError("make_ensemble needs at least one backbone, e.g. make_ensemble('efficientnet_lite0').")
    params: dict[str, Any] = {"layer": layer, "tta": tta, "tta_reduce": tta_reduce, "cache": cache}
    clash = sorted(set(decaf_params or {}) & {"backbone", *params})
    if clash:
        raise ValueError(f"Pass {', '.join(clash)} as make_ensemble's own argument(s), not in decaf_params.")
    params.update(decaf_params or {})
    branches: list[tuple[str, BaseEstimator]] = []
    for backbone in backbones:
        decaf = DeCAFTransformer(backbone, **params)
        step = Pipeline([("decaf", decaf), ("signed_sqrt", SignedSqrt())]) if signed_sqrt else decaf
        branches.append((_branch_name(backbone, {name for name, _ in branches}), step))
    return FeatureUnion(branches)
