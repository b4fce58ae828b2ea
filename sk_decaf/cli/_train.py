"""``sk-decaf train --data DIR -o model.onnx``: fit the recommended pipeline on an image folder and export it.

The pipeline is ``DeCAFTransformer -> SignedSqrt -> LinearSVC`` (Azizpour et al.'s recipe), or with several
``--backbone`` names ``make_ensemble(...) -> LinearSVC`` (each backbone's features SignedSqrt-normalised, then
concatenated), with ``--tta`` test-time augmentation. Its layer is chosen by stratified cross-validation as
in ``sk-decaf demo``, every image going through each network once thanks to an activation cache, and the
refitted best pipeline is written with :func:`sk_decaf.to_onnx`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import TYPE_CHECKING

import numpy as np

from ._common import Subparsers, add_backbone_options, describe_backbones, make_features, parse_backbone, parse_layer

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

#: Default layers to choose from, counted back from the logits: the 5th, 3rd and 2nd last.
DEFAULT_LAYERS = (-5, -3, -2)


def add_train_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "train",
        help="fit DeCAF -> SignedSqrt -> LinearSVC on an image folder, export it to ONNX",
        description="Fit the recommended pipeline (DeCAFTransformer -> SignedSqrt -> LinearSVC; with several "
        "--backbone names, their SignedSqrt-normalised features concatenated) on DIR/<class>/<image>, "
        "choose its layer by stratified cross-validation, report the CV accuracy and write the refitted "
        "pipeline as one ONNX model, which 'sk-decaf predict' runs without torch or scikit-learn.",
    )
    p.add_argument("--data", metavar="DIR", required=True, help="image folder, one sub-folder per class")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="the .onnx file to write")
    p.add_argument(
        "--layers",
        nargs="+",
        type=parse_layer,
        default=None,
        help="layers to choose from, the same for every backbone (default: the 5th, 3rd and 2nd last, as "
        "'sk-decaf demo')",
    )
    p.add_argument(
        "--cv", type=int, default=5, help="stratified folds, at most the smallest class's size (default: %(default)s)"
    )
    p.add_argument("-C", type=float, default=1.0, help="LinearSVC regularisation (default: %(default)s)")
    add_backbone_options(p, ensemble=True)
    p.set_defaults(func=run_train)


def _candidates(args: argparse.Namespace) -> list[tuple[str | int, str]]:
    """``[(layer spec, label)]``: the layers to choose from, each with the layer name(s) it means."""
    from ..transformers import list_layers

    available = [list_layers(parse_backbone(backbone)[0]) for backbone in args.backbone]
    specs = args.layers or [i for i in DEFAULT_LAYERS if all(len(names) >= -i for names in available)]
    out = []
    for spec in specs:
        names = [names[spec] if isinstance(spec, int) and -len(names) <= spec < 0 else spec for names in available]
        out.append((spec, " + ".join(dict.fromkeys(map(str, names)))))
    return out


def _pipeline(args: argparse.Namespace, cache: str) -> tuple[list[str], Pipeline]:
    """``(parameter names, pipeline)``: the pipeline to fit and the parameters that set its layer(s)."""
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from ..transformers import SignedSqrt

    features = make_features(args, None, cache, verbose=args.verbose)
    if len(args.backbone) == 1:
        pipe = Pipeline([("decaf", features), ("sqrt", SignedSqrt()), ("svm", LinearSVC(C=args.C))])
        return ["decaf__layer"], pipe
    pipe = Pipeline([("features", features), ("svm", LinearSVC(C=args.C))])
    return [f"features__{name}__decaf__layer" for name, _ in features.transformer_list], pipe


def run_train(args: argparse.Namespace) -> int:
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from ..datasets import load_image_folder
    from ..deploy import to_onnx

    data = load_image_folder(args.data)
    labels = np.asarray(data.target_names, dtype=object)[data.target]  # the model outputs class names
    smallest = int(np.bincount(data.target).min())
    if len(data.target_names) < 2 or smallest < 2:
        raise ValueError(f"sk-decaf train needs at least 2 classes of at least 2 images each in {args.data!r}.")
    folds = min(args.cv, smallest)
    candidates = _candidates(args)
    if not candidates:
        raise ValueError(f"{' and '.join(args.backbone)} have too few layers for the default choice; pass --layers.")
    print(f"sk-decaf train: {len(data.paths)} images, {len(data.target_names)} classes from {args.data}")
    network = (
        f"DeCAFTransformer({args.backbone[0]!r}) -> SignedSqrt"
        if len(args.backbone) == 1
        else f"make_ensemble({', '.join(map(repr, args.backbone))})"
    )
    print(
        f"{network} -> LinearSVC(C={args.C}){f'; tta={args.tta}' if args.tta else ''}; {folds}-fold stratified "
        f"CV over layers {', '.join(label for _, label in candidates)}\n"
    )
    with tempfile.TemporaryDirectory(prefix="sk_decaf_train_") as tmp:
        cache = args.cache or os.path.join(tmp, "activations.sqlite")
        params, pipe = _pipeline(args, cache)
        # One grid point per layer, set on every backbone alike.
        grid = GridSearchCV(
            pipe,
            [{param: [spec] for param in params} for spec, _ in candidates],
            error_score="raise",
            cv=StratifiedKFold(folds, shuffle=True, random_state=0),
        )
        start = time.perf_counter()
        grid.fit(data.paths, labels)
        fitted = time.perf_counter() - start
        results = grid.cv_results_
        best = grid.best_params_[params[0]]
        for (spec, label), mean, std in zip(candidates, results["mean_test_score"], results["std_test_score"]):
            mark = "  <- best" if spec == best else ""
            print(f"  {label:<16} accuracy {mean:.3f} +- {std:.3f}{mark}")
        best = dict(candidates)[best]
        print(
            f"\nCV accuracy {grid.best_score_:.3f} with layer {best} (chance {1 / len(data.target_names):.3f}); "
            f"{describe_backbones(args)}; {fitted:.1f} s"
        )
        # Checked on a few training images before it is written: same labels, scores within 1e-4.
        model = to_onnx(grid.best_estimator_, args.output, X=data.paths[:: max(1, len(data.paths) // 16)])
    outputs = ", ".join(o.name for o in model.graph.output)
    inputs = ", ".join(i.name for i in model.graph.input)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB; inputs {inputs}; outputs {outputs})")
    print(f"predict with: sk-decaf predict {args.output} IMAGE...")
    return 0 if np.isfinite(grid.best_score_) else 1
