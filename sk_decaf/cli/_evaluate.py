"""``sk-decaf evaluate``: DeCAF's protocols on an image folder, as a table and figures.

Per-class protocols (``caltech101``: 30 training images per class, the rest tested; ``per-class``:
``--n-train`` per class) read ``DIR/<class>/<image>``; the ``office`` protocol (Saenko et al. 2010,
DeCAF Table 1) reads an Office-Caltech-10 (``DIR/<domain>/<class>/*.jpg``) or Office-31
(``DIR/<domain>/images/<class>/*.jpg``) root. Every layer and setting is scored on the same random
splits by mean per-class accuracy; the network runs once per image thanks to an activation cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._common import (
    Subparsers,
    add_backbone_options,
    describe_backbones,
    feature_transformers,
    make_features,
    parse_layer,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from sklearn.base import BaseEstimator
    from sklearn.utils import Bunch

    from ..evaluation import EvaluationResult

#: Points of the few-shot curve (DeCAF Fig. 4 right), kept where every class has one more image.
FEW_SHOT_POINTS = (1, 2, 3, 5, 10, 20, 30)


def add_evaluate_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "evaluate",
        help="mean per-class accuracy under a DeCAF protocol, with figures",
        description="Score DeCAFTransformer -> linear classifier pipelines under DeCAF's protocols: "
        "caltech101 (30 training images per class, the rest tested), per-class (--n-train per "
        "class) or office (Saenko et al. 2010: --source -> --target, settings S, T, ST). Prints "
        "mean per-class accuracy +- std over random splits per layer and setting; --figures "
        "saves PNG figures.",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        required=True,
        help="DIR/<class>/<image> (per-class protocols), or an Office-Caltech-10 root "
        "DIR/<domain>/<class>/*.jpg or Office-31 root DIR/<domain>/images/<class>/*.jpg",
    )
    p.add_argument(
        "--protocol",
        choices=["caltech101", "per-class", "office"],
        default="caltech101",
        help="evaluation protocol (default: %(default)s)",
    )
    p.add_argument("--n-train", type=int, default=None, help="training images per class (per-class only)")
    p.add_argument("--splits", type=int, default=5, help="random splits (default: %(default)s)")
    p.add_argument(
        "--too-few",
        choices=["raise", "skip", "shrink"],
        default="raise",
        help="classes with too few images: error, leave out, or use what they have",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the splits (default: %(default)s)")
    office = p.add_argument_group("office protocol")
    office.add_argument("--source", default="amazon", help="source domain (default: %(default)s)")
    office.add_argument("--target", default="webcam", help="target domain (default: %(default)s)")
    office.add_argument(
        "--settings",
        nargs="+",
        choices=["S", "T", "ST"],
        default=["S", "T", "ST"],
        help="training sets: source, labelled target, both (default: all three)",
    )
    office.add_argument(
        "--n-source",
        type=int,
        default=None,
        help="source images per class (default: 20 for amazon/caltech10, 8 for dslr/webcam)",
    )
    office.add_argument(
        "--n-target", type=int, default=3, help="labelled target images per class (default: %(default)s)"
    )
    head = p.add_argument_group("classifier")
    head.add_argument(
        "--layer",
        nargs="+",
        type=parse_layer,
        default=None,
        help="layer(s) to compare, each evaluated alone (default: the backbone's generic layer)",
    )
    head.add_argument(
        "--classifier",
        choices=["svm", "logreg"],
        default="svm",
        help="LinearSVC or LogisticRegression (default: %(default)s)",
    )
    head.add_argument("-C", type=float, default=1.0, help="inverse regularisation (default: %(default)s)")
    p.add_argument(
        "--figures",
        metavar="OUTDIR",
        default=None,
        help="save figures as PNG: few-shot curve and t-SNE (per-class), t-SNE of source and target (office)",
    )
    add_backbone_options(p, ensemble=True)
    p.set_defaults(func=run_evaluate)


def _classifier(args: argparse.Namespace) -> BaseEstimator:
    if args.classifier == "svm":
        from sklearn.svm import LinearSVC

        return LinearSVC(C=args.C)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=args.C, max_iter=2000)


def _load(args: argparse.Namespace) -> Bunch:
    """The dataset Bunch: a class folder, or the source and target domains of an Office root."""
    from ..datasets import load_image_folder, load_office31, load_office_caltech10

    if args.protocol != "office":
        return load_image_folder(args.data)
    if args.source == args.target:
        raise ValueError(f"--source and --target are both {args.source!r}.")
    root = Path(args.data).expanduser()
    loader = load_office31 if (root / args.source / "images").is_dir() else load_office_caltech10
    return loader(root, domain=[args.source, args.target])


def _table(rows: list[tuple[str, str, EvaluationResult]], office: bool) -> str:
    """Plain-text table of (layer, setting, EvaluationResult) rows."""
    width = max(len("layer"), *(len(layer) for layer, _, _ in rows)) + 2
    head = f"{'layer':<{width}}" + (f"{'setting':<9}" if office else "")
    head += f"{'mean per-class acc. (%)':>25} {'splits':>7} {'train':>7} {'test':>7}"
    lines = [head, "-" * len(head)]
    for layer, setting, res in rows:
        line = f"{layer:<{width}}" + (f"{setting:<9}" if office else "")
        cell = f"{100 * res.mean:.2f} ± {100 * res.std:.2f}"
        n_train, n_test = int(np.mean(res.n_train)), int(np.mean(res.n_test))
        line += f"{cell:>25} {len(res.scores):>7} {n_train:>7} {n_test:>7}"
        lines.append(line)
    return "\n".join(lines)


def _save(fig: Figure, folder: str, name: str) -> str:
    path = os.path.join(folder, name)
    fig.savefig(path, dpi=100)
    return path


def _tsne_domains(
    features: np.ndarray,
    y: np.ndarray,
    domain: np.ndarray,
    target_names: Any,
    source: str,
    target: str,
    seed: int = 0,
) -> Figure:
    """t-SNE of source and target features: one colour per class, one marker per domain (DeCAF Fig. 5)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    embedding = TSNE(2, perplexity=min(30.0, len(features) - 1), init="pca", random_state=seed).fit_transform(
        np.asarray(features, dtype=float)
    )
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.subplots()
    colors = colormaps["tab10" if len(target_names) <= 10 else "turbo"]
    classes = np.unique(y)
    for k, c in enumerate(classes):
        color = colors(k if len(classes) <= 10 else k / max(len(classes) - 1, 1))
        for name, marker in ((source, "o"), (target, "^")):
            mask = (y == c) & (domain == name)
            points = embedding[mask]
            ax.scatter(
                points[:, 0],
                points[:, 1],
                s=14 if marker == "o" else 28,
                marker=marker,
                color=color,
                edgecolors="k" if marker == "^" else "none",
                linewidths=0.4,
                label=str(target_names[c]) if name == source else None,
            )
    for name, marker in ((source, "o"), (target, "^")):  # domain legend entries, in grey
        role = "source" if name == source else "target"
        ax.scatter([], [], marker=marker, color="0.5", label=f"{name} ({role})")
    ax.legend(fontsize="small", ncols=2, loc="best")
    ax.set(xticks=[], yticks=[], title=f"t-SNE of DeCAF features: {source} (o) and {target} (^)")
    return fig


def _figures(
    args: argparse.Namespace,
    data: Bunch,
    rows: list[tuple[str, str, EvaluationResult]],
    make_pipe: Callable[[str], BaseEstimator],
    features: np.ndarray,
    outdir: str,
) -> list[str]:
    from ..evaluation import few_shot_curve
    from ..plotting import plot_few_shot, plot_tsne

    os.makedirs(outdir, exist_ok=True)
    saved = []
    first = rows[0][0]
    if args.protocol == "office":
        fig = _tsne_domains(
            features, data.target, np.asarray(data.domain), data.target_names, args.source, args.target, seed=args.seed
        )
        saved.append(_save(fig, outdir, "tsne_office.png"))
        return saved
    counts = np.bincount(data.target)
    points = sorted({k for k in FEW_SHOT_POINTS + ((args.n_train,) if args.n_train else ()) if k <= counts.min() - 1})
    if points:
        curves = {
            layer: few_shot_curve(make_pipe(layer), data, n_train=points, n_splits=args.splits, random_state=args.seed)
            for layer in dict.fromkeys(layer for layer, _, _ in rows)
        }
        saved.append(_save(plot_few_shot(curves), outdir, "few_shot.png"))
    fig = plot_tsne(features, data.target, label_names=data.target_names, random_state=args.seed)
    fig.axes[0].set_title(f"t-SNE of DeCAF features ({describe_backbones(args)}, {first})")
    saved.append(_save(fig, outdir, "tsne.png"))
    return saved


def run_evaluate(args: argparse.Namespace) -> int:
    from sklearn.pipeline import Pipeline

    from ..evaluation import evaluate, evaluate_office

    if args.figures:
        import matplotlib  # noqa: F401  fail early, before any feature is computed

    data = _load(args)
    office = args.protocol == "office"
    print(f"sk-decaf evaluate: {len(data.paths)} images, {len(data.target_names)} classes from {args.data}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sk_decaf_evaluate_") as tmp:
        # The first pass stores every small layer; other layers, settings and figures are cache hits.
        cache = args.cache or os.path.join(tmp, "activations.sqlite")

        def make_decaf(layer: str | int | None) -> Any:
            return make_features(args, layer, cache)

        names: dict[str, str | int | None] = {}
        for layer in args.layer or [None]:
            name = feature_transformers(make_decaf(layer))[0].fit(data.paths).layers_[0]  # fit reads no image
            names.setdefault(name, layer)

        def make_pipe(name: str) -> BaseEstimator:
            return Pipeline([("decaf", make_decaf(names[name])), ("clf", _classifier(args))])

        features = None
        if args.figures:  # every image is plotted: featurize all of them first, through the cache
            features = make_decaf(names[next(iter(names))]).fit_transform(data.paths)
        rows, protocol = [], None
        for name in names:
            results: dict[str, EvaluationResult]
            if office:
                results = evaluate_office(
                    make_pipe(name),
                    data,
                    source=args.source,
                    target=args.target,
                    settings=tuple(args.settings),
                    n_source_per_class=args.n_source,
                    n_target_per_class=args.n_target,
                    n_splits=args.splits,
                    too_few=args.too_few,
                    random_state=args.seed,
                )
                protocol = results.protocol  # one description for all settings
            else:
                results = {
                    "": evaluate(
                        make_pipe(name),
                        data,
                        protocol=args.protocol,
                        n_train=args.n_train,
                        n_splits=args.splits,
                        too_few=args.too_few,
                        random_state=args.seed,
                    )
                }
                protocol = results[""].protocol
            rows += [(name, setting, result) for setting, result in results.items()]
        saved = _figures(args, data, rows, make_pipe, features, args.figures) if features is not None else []
        computed = [
            decaf.fit(data.paths[:1]).cache_info()["computed"]
            for decaf in feature_transformers(make_decaf(names[next(iter(names))]))
        ]
    clf = type(_classifier(args)).__name__
    print(f"backbone {describe_backbones(args)}, {clf}(C={args.C}); protocol {protocol}\n")
    print(_table(rows, office))
    print(
        f"\n{time.perf_counter() - start:.1f} s; {' + '.join(map(str, computed))} images went through the "
        f"network{'s' if len(computed) > 1 else ''}"
    )
    for path in saved:
        print(f"saved {path}")
    return 0
