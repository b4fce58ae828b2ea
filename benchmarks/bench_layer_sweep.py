"""A GridSearchCV layer sweep costs one extraction: the activation cache at work, as ratios.

On the embedded demo set (200 images), in one run, each in a fresh process:

1. one plain extraction of every image (``DeCAFTransformer(cache=None)``);
2. ``GridSearchCV`` over 3 layers x 2 values of C x 3 folds (+ refit) of ``DeCAFTransformer -> LinearSVC``
   with a fresh activation cache: 19 fits and 37 transforms of the transformer;
3. the same grid search again, with the cache now warm;
4. a fully cached re-extraction of every image.

Each process first pays its *start-up* (network load, ONNX export and check, one image through the
network), timed apart and reported apart from the per-image work that follows; the sweep's own clones
still load the network once more from disk when the first of them computes. Ratios are given after
start-up and in total (start-up included, as a new user pays it).

Targets: (2) / (1) <= 1.3 in total, with every image through the network once; (1) / (4) >= 50.

Usage: ``python benchmarks/bench_layer_sweep.py [--backbone efficientnet_lite0]``
"""

import argparse
import os
import sys
import tempfile
import time

from _common import elapsed, format_table, run_worker, warm_files, write_result

SCRIPT = os.path.abspath(__file__)


def _probe_image():
    """An image outside the demo set: start-up runs it through the network without caching a demo image."""
    import numpy as np

    return np.full((240, 320, 3), 127, dtype=np.uint8)


def _start_up(**params):
    """Time a first one-image transform in a fresh transformer: network load, ONNX export and check."""
    from sk_decaf import DeCAFTransformer

    start = time.perf_counter()
    est = DeCAFTransformer(**params).fit([_probe_image()])
    est.transform([_probe_image()])
    return est, elapsed(start)


def plain_extraction(args, paths):
    est, startup = _start_up(backbone=args.backbone, layer="pre_logits")
    start = time.perf_counter()
    est.transform(paths)  # no cache: every image through the network
    return dict(startup=startup, work=elapsed(start))


def sweep(args, paths, y):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from sk_decaf import DeCAFTransformer

    cache = os.path.join(os.environ["SK_DECAF_HOME"], "activations.sqlite")
    # ParameterGrid's first candidate takes the first layer: the same exported graph as the sweep's first fit.
    est, startup = _start_up(backbone=args.backbone, layer=args.layers[0], cache=cache)
    computed_before = est.cache_info()["computed"]
    pipe = Pipeline([("decaf", DeCAFTransformer(backbone=args.backbone, cache=cache)), ("svm", LinearSVC())])
    grid = GridSearchCV(
        pipe, {"decaf__layer": args.layers, "svm__C": [0.1, 1.0]}, cv=StratifiedKFold(3, shuffle=True, random_state=0)
    )
    start = time.perf_counter()
    grid.fit(paths, y)
    cold = elapsed(start)
    computed = est.cache_info()["computed"] - computed_before
    start = time.perf_counter()
    grid.fit(paths, y)
    warm = elapsed(start)
    start = time.perf_counter()
    DeCAFTransformer(backbone=args.backbone, layer="pre_logits", cache=cache).fit_transform(paths)
    cached = elapsed(start)
    scores = [
        (p["decaf__layer"], p["svm__C"], s)
        for p, s in zip(grid.cv_results_["params"], grid.cv_results_["mean_test_score"])
    ]
    return dict(startup=startup, cold=cold, warm=warm, cached=cached, computed=computed, scores=scores)


def worker(args):
    os.environ["SK_DECAF_HOME"] = tempfile.mkdtemp()  # no exported ONNX graph yet: a cold start
    from sk_decaf.datasets import load_demo

    demo = load_demo()
    paths = list(demo.paths)
    warm_files(paths)
    figures = plain_extraction(args, paths) if args.worker == "plain" else sweep(args, paths, demo.target)
    write_result(args.result_dir, args.worker, n_images=len(paths), **figures)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--layers", nargs="+", default=["blocks.4", "blocks.6", "pre_logits"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    result_dir = tempfile.mkdtemp(prefix="bench_layer_sweep_")
    passthrough = ["--backbone", args.backbone, "--layers", *args.layers]
    results = {}
    for name in ("plain", "sweep"):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name], results[name + "_mb"] = run_worker(SCRIPT, name, passthrough, result_dir)
    plain, sw = results["plain"], results["sweep"]
    n = plain["n_images"]
    n_fits = len(args.layers) * 2 * 3 + 1
    print(
        f"\ndemo set: {n} images, backbone {args.backbone}, GridSearchCV {len(args.layers)} layers x 2 C x "
        f"3 folds ({n_fits} fits of the pipeline), each in a fresh process, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    base, base_total = plain["work"], plain["startup"] + plain["work"]
    rows = [
        (
            "plain extraction of all images",
            f"{plain['startup']:.2f}",
            f"{base:.2f}",
            "1.00",
            f"{base_total:.2f}",
            "1.00",
        ),
        (
            "grid search, fresh cache",
            f"{sw['startup']:.2f}",
            f"{sw['cold']:.2f}",
            f"{sw['cold'] / base:.2f}",
            f"{sw['startup'] + sw['cold']:.2f}",
            f"{(sw['startup'] + sw['cold']) / base_total:.2f}",
        ),
        ("grid search, warm cache", "-", f"{sw['warm']:.2f}", f"{sw['warm'] / base:.2f}", "-", "-"),
        ("re-extraction from the cache", "-", f"{sw['cached']:.3f}", f"1/{base / sw['cached']:.0f}", "-", "-"),
    ]
    header = ("", "start-up s", "after start-up s", "x extraction", "total s", "x extraction (total)")
    print("\n".join(format_table(header, rows)))
    print(f"\nper image, plain extraction after start-up: {1000 * base / n:.1f} ms")
    print(
        f"grid search with a fresh cache, in total: {(sw['startup'] + sw['cold']) / base_total:.2f} x one "
        f"extraction (target <= 1.3)"
    )
    print(f"re-extraction from the cache: {base / sw['cached']:.0f} x faster than extraction (target >= 50)")
    print(
        f"images through the network during the sweep: {sw['computed']} for {n} images "
        f"({sw['computed'] / n:.2f} per image, target 1)"
    )
    print(
        f"peak memory (PSS, process + workers): plain {results['plain_mb']:.0f} MB, sweep {results['sweep_mb']:.0f} MB"
    )
    print("mean CV accuracy per candidate:")
    for layer, C, score in sw["scores"]:
        print(f"  {layer:<12} C={C:<4} {score:.3f}")


if __name__ == "__main__":
    main()
