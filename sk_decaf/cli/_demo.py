"""``sk-decaf demo``: cross-validate the layer of a DeCAF -> LinearSVC pipeline on the demo set."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np

from ._common import Subparsers, add_backbone_options, parse_backbone, parse_layer, transformer_kwargs


def add_demo_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "demo",
        help="cross-validate DeCAF layers with a linear SVM on the embedded demo set",
        description="Pipeline DeCAFTransformer -> LinearSVC, GridSearchCV over the layer, on the "
        "embedded Caltech-101 demo set (10 classes x 20 images) or on --data DIR.",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="your own image folder (DIR/<class>/<image>) instead of the demo set",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        type=parse_layer,
        default=None,
        help="layers to compare (default: the 5th, 3rd and 2nd last: blocks.2, blocks.6 and "
        "pre_logits of EfficientNet-Lite0, conv5, fc6 and fc7 of AlexNet, as in DeCAF Fig. 4)",
    )
    p.add_argument("--cv", type=int, default=5, help="stratified folds (default: %(default)s)")
    p.add_argument("-C", type=float, default=1.0, help="LinearSVC regularisation (default: %(default)s)")
    add_backbone_options(p)
    p.set_defaults(func=run_demo)


def _table(grid: Any, layers: list[Any]) -> str:
    res = grid.cv_results_
    width = max(len(str(layer)) for layer in layers) + 2
    lines = [f"{'layer':<{width}} {'mean accuracy':>14} {'std':>7}", "-" * (width + 23)]
    for layer, mean, std in zip(res["param_decaf__layer"], res["mean_test_score"], res["std_test_score"]):
        mark = "  <- best" if layer == grid.best_params_["decaf__layer"] else ""
        lines.append(f"{str(layer):<{width}} {mean:>14.3f} {std:>7.3f}{mark}")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from ..datasets import load_demo, load_image_folder
    from ..transformers import DeCAFTransformer, list_layers

    data = load_image_folder(args.data) if args.data else load_demo()
    source = args.data or "embedded demo set (Caltech-101 subset, CC BY 4.0, Fei-Fei et al. 2004)"
    available = list_layers(parse_backbone(args.backbone)[0])
    layers = args.layers or [available[i] for i in (-5, -3, -2) if len(available) >= -i]
    with tempfile.TemporaryDirectory(prefix="sk_decaf_demo_") as tmp:
        # One forward pass per image feeds every layer, fold and refit through the activation cache.
        cache = args.cache or os.path.join(tmp, "activations.sqlite")
        decaf = DeCAFTransformer(cache=cache, **transformer_kwargs(args))
        pipe = Pipeline([("decaf", decaf), ("svm", LinearSVC(C=args.C))])
        # error_score="raise": a bad image stops the demo at once, naming the file, instead of NaN scores.
        grid = GridSearchCV(
            pipe,
            {"decaf__layer": layers},
            error_score="raise",
            cv=StratifiedKFold(args.cv, shuffle=True, random_state=0),
        )
        print(f"sk-decaf demo: {len(data.paths)} images, {len(data.target_names)} classes from {source}")
        print(
            f"backbone {args.backbone}, LinearSVC(C={args.C}), {args.cv}-fold stratified CV over layers "
            f"{', '.join(map(str, layers))}\n"
        )
        start = time.perf_counter()
        grid.fit(data.paths, data.target)
        seconds = time.perf_counter() - start
        info = grid.best_estimator_.named_steps["decaf"].cache_info()
    print(_table(grid, layers))
    print(
        f"\nbest layer: {grid.best_params_['decaf__layer']} "
        f"(mean accuracy {grid.best_score_:.3f}, chance {1 / len(data.target_names):.3f})"
    )
    print(
        f"{seconds:.1f} s; {info['computed']} images went through the network, "
        f"{info['hits']} lookups were served by the activation cache"
    )
    return 0 if np.isfinite(grid.best_score_) else 1
