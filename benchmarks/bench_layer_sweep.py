"""A GridSearchCV layer sweep costs one extraction: the activation cache at work, as ratios.

On the embedded demo set (200 images), in one run:

1. one plain extraction of every image (``DeCAFTransformer(cache=None).fit_transform``);
2. ``GridSearchCV`` over 3 layers x 2 values of C x 3 folds (+ refit) of ``DeCAFTransformer -> LinearSVC``
   with a fresh activation cache: 19 fits and 37 transforms of the transformer;
3. the same grid search again, with the cache now warm;
4. a fully cached re-extraction of every image.

Targets: (2) / (1) <= 1.3 with every image through the network once; (1) / (4) >= 50.

Usage: ``python benchmarks/bench_layer_sweep.py [--backbone efficientnet_lite0]``
"""

import argparse
import multiprocessing as mp
import os
import tempfile
import time


def _warm_files(paths):
    for p in paths:  # the OS file cache is warm for every contender
        with open(p, "rb") as f:
            f.read()


def plain_extraction(backbone, queue):
    os.environ["SK_DECAF_HOME"] = tempfile.mkdtemp()  # no exported ONNX graph yet, as for the sweep
    from sk_decaf import DeCAFTransformer
    from sk_decaf.datasets import load_demo

    paths = load_demo().paths
    _warm_files(paths)
    start = time.perf_counter()
    DeCAFTransformer(backbone=backbone, layer="pre_logits").fit_transform(paths)
    queue.put(time.perf_counter() - start)


def sweep(backbone, layers, queue):
    home = tempfile.mkdtemp()
    os.environ["SK_DECAF_HOME"] = home
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from sk_decaf import DeCAFTransformer
    from sk_decaf.datasets import load_demo

    demo = load_demo()
    paths, y = demo.paths, demo.target
    _warm_files(paths)
    cache = os.path.join(home, "activations.sqlite")
    pipe = Pipeline([("decaf", DeCAFTransformer(backbone=backbone, cache=cache)), ("svm", LinearSVC())])
    grid = GridSearchCV(pipe, {"decaf__layer": layers, "svm__C": [0.1, 1.0]},
                        cv=StratifiedKFold(3, shuffle=True, random_state=0))
    start = time.perf_counter()
    grid.fit(paths, y)
    cold = time.perf_counter() - start
    computed = grid.best_estimator_.named_steps["decaf"].cache_info()["computed"]
    start = time.perf_counter()
    grid.fit(paths, y)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    DeCAFTransformer(backbone=backbone, layer="pre_logits", cache=cache).fit_transform(paths)
    cached = time.perf_counter() - start
    scores = [(p["decaf__layer"], p["svm__C"], s)
              for p, s in zip(grid.cv_results_["params"], grid.cv_results_["mean_test_score"])]
    queue.put((cold, warm, cached, computed, len(paths), scores))


def _in_fresh_process(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--layers", nargs="+", default=["blocks.4", "blocks.6", "pre_logits"])
    args = parser.parse_args(argv)

    # Each contender starts in a fresh process: network load, ONNX export and kernel warm-up included.
    plain = _in_fresh_process(plain_extraction, args.backbone)
    cold, warm, cached, computed, n, scores = _in_fresh_process(sweep, args.backbone, args.layers)

    n_fits = len(args.layers) * 2 * 3 + 1
    print(f"demo set: {n} images, backbone {args.backbone}, GridSearchCV {len(args.layers)} layers x "
          f"2 C x 3 folds ({n_fits} fits of the pipeline), each contender in a fresh process\n")
    print(f"plain extraction of all images           {plain:7.2f} s   1.00")
    print(f"grid search, fresh cache                 {cold:7.2f} s   {cold / plain:.2f} x extraction (target <= 1.3)")
    print(f"grid search, warm cache                  {warm:7.2f} s   {warm / plain:.2f} x extraction")
    print(f"re-extraction from the cache             {cached:7.3f} s   {plain / cached:.0f} x faster than extraction "
          f"(target >= 50)")
    print(f"\nimages through the network during the sweep: {computed} for {n} images "
          f"({computed / n:.2f} per image, target 1)")
    print("mean CV accuracy per candidate:")
    for layer, C, score in scores:
        print(f"  {layer:<12} C={C:<4} {score:.3f}")


if __name__ == "__main__":
    main()
