"""Options shared by the sub-commands, and the feature transformer they describe."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from sklearn.pipeline import FeatureUnion

    from ..transformers import DeCAFTransformer

#: What ``add_subparsers`` returns: each command adds its parser to it.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

#: ``--tta`` modes (DeCAFTransformer's ``tta``).
TTA_CHOICES = ["flip", "10crop", "12jitter"]


def add_backbone_options(parser: argparse.ArgumentParser, *, ensemble: bool = False) -> None:
    """The network options; with ``ensemble``, ``--backbone`` takes several names and ``--tta`` a mode."""
    group = parser.add_argument_group("network")
    if ensemble:
        group.add_argument(
            "--backbone",
            nargs="+",
            default=["efficientnet_lite0"],
            type=backbone_spec,
            metavar="NAME[@SIZE]",
            help="timm model name(s), 'alexnet' or 'torchvision:<name>' (default: %(default)s, "
            "ImageNet weights shipped offline); several names concatenate their features, each "
            "SignedSqrt-normalised (sk_decaf.make_ensemble); NAME@SIZE runs that network at input size SIZE "
            "(N or HxW), e.g. efficientnet_lite2@300",
        )
        group.add_argument(
            "--tta",
            choices=TTA_CHOICES,
            default=None,
            help="test-time augmentation: features averaged over the image and its mirror, Caffe's "
            "10 crops or Azizpour et al.'s 12 jitters (default: none)",
        )
    else:
        group.add_argument(
            "--backbone",
            default="efficientnet_lite0",
            type=backbone_spec,
            metavar="NAME[@SIZE]",
            help="timm model name, 'alexnet' or 'torchvision:<name>' (default: %(default)s, "
            "ImageNet weights shipped offline); NAME@SIZE runs it at input size SIZE (N or HxW)",
        )
    group.add_argument(
        "--weights",
        default=None,
        help="local .pth/.pt/.safetensors state dict, or 'random' (default: the backbone's ImageNet weights)",
    )
    group.add_argument(
        "--pooling",
        default="avg",
        help="avg, max, flatten, an int k for a k x k grid; on a transformer layer also cls (the class token) "
        "or cls+avg (DINOv2's linear probe with --layer norm)",
    )
    group.add_argument("--preprocess", default="model", choices=["model", "decaf"])
    group.add_argument(
        "--input-size",
        type=parse_input_size,
        default=None,
        metavar="N or HxW",
        help="the network's input size, e.g. 224 or 224x280 (default: the size the network is built for)",
    )
    group.add_argument("--device", default="auto")
    group.add_argument("--engine", default="auto", choices=["auto", "torch", "onnxruntime"])
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument("--n-jobs", type=int, default=None, help="image-decoding worker processes")
    group.add_argument(
        "--cache",
        default=None,
        help="SQLite activation cache file (default: none, or a temporary one where a command needs it)",
    )
    group.add_argument(
        "--weights-seed",
        type=int,
        default=0,
        help="seed of random weights (--weights random), the same for every fit (default: %(default)s)",
    )
    group.add_argument("-v", "--verbose", action="store_true", help="progress bars")


def parse_layer(value: str) -> str | int:
    """A layer name, or a negative int counting back from the logits."""
    try:
        return int(value)
    except ValueError:
        return value


def parse_pooling(value: str) -> str | int:
    return int(value) if value.isdigit() else value


def parse_input_size(value: str) -> int | tuple[int, ...]:
    """``"224"`` -> 224, ``"224x280"`` -> (224, 280)."""
    parts = value.lower().split("x")
    if not all(part.strip().isdigit() for part in parts) or len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected N or HxW (e.g. 224 or 224x280), got {value!r}")
    sizes = [int(part) for part in parts]
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def parse_backbone(spec: str) -> tuple[str, int | tuple[int, ...] | None]:
    """``"NAME"`` -> ``(NAME, None)``; ``"NAME@SIZE"`` -> ``(NAME, SIZE)``, SIZE as :func:`parse_input_size`."""
    name, _, size = spec.partition("@")
    return name, parse_input_size(size) if size else None


def backbone_spec(value: str) -> str:
    """argparse type of ``--backbone``: the string itself, once its ``@SIZE`` part is checked."""
    parse_backbone(value)
    return value


def transformer_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """DeCAFTransformer's parameters from the options (``--backbone``: one name, or several left as they are)."""
    backbone, size = (args.backbone, None) if isinstance(args.backbone, list) else parse_backbone(args.backbone)
    return dict(
        backbone=backbone,
        weights=args.weights,
        pooling=parse_pooling(args.pooling),
        preprocess=args.preprocess,
        input_size=size or args.input_size,
        device=args.device,
        engine=args.engine,
        batch_size=args.batch_size,
        n_jobs=args.n_jobs,
        verbose=args.verbose,
        random_state=args.weights_seed,
    )


def make_features(
    args: argparse.Namespace, layer: Any, cache: str | None, *, verbose: bool | None = None
) -> DeCAFTransformer | FeatureUnion:
    """The DeCAFTransformer of ``args``, or with several ``--backbone`` their :func:`sk_decaf.make_ensemble`.

    The ensemble concatenates the backbones' SignedSqrt-normalised features; ``layer``, ``cache`` and
    ``--tta`` are shared. ``verbose`` None shows progress bars with ``-v`` or in a terminal (logs and pipes stay quiet).
    """
    from ..transformers import DeCAFTransformer, make_ensemble

    # transformer_kwargs fixes random_state: with --weights random, every clone draws the same weights.
    kwargs = {**transformer_kwargs(args), "layer": layer, "cache": cache, "tta": args.tta}
    kwargs["verbose"] = (args.verbose or sys.stderr.isatty()) if verbose is None else verbose
    specs = [parse_backbone(spec) for spec in kwargs.pop("backbone")]  # NAME@SIZE: that branch's input size
    if len(specs) == 1:
        name, size = specs[0]
        return DeCAFTransformer(name, **{**kwargs, "input_size": size or kwargs["input_size"]})
    shared = {key: kwargs.pop(key) for key in ("layer", "cache", "tta")}
    union = make_ensemble(*(name for name, _ in specs), **shared, decaf_params=kwargs)
    for decaf, (_, size) in zip(feature_transformers(union), specs):
        if size:
            decaf.set_params(input_size=size)
    return union


def feature_transformers(features: DeCAFTransformer | FeatureUnion) -> list[DeCAFTransformer]:
    """The DeCAFTransformer(s) of :func:`make_features`' result, one per backbone."""
    if hasattr(features, "transformer_list"):
        return [branch[0] if hasattr(branch, "steps") else branch for _, branch in features.transformer_list]
    return [features]


def describe_backbones(args: argparse.Namespace) -> str:
    """The backbone(s) and test-time augmentation, e.g. 'efficientnet_lite0 + efficientnet_lite2, tta=flip'."""
    return " + ".join(args.backbone) + (f", tta={args.tta}" if args.tta else "")
