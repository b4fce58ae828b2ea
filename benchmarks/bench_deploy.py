"""Serving speed: the exported ONNX pipeline against ``pipeline.predict``, end to end, in one run, as a ratio.

Both start from image files and end with labels, on the same images and the same CPU threads:

* ``pipeline.predict``: the fitted ``DeCAFTransformer -> SignedSqrt -> LinearSVC`` (engine ``"auto"``, which is
  onnxruntime on the CPU), no activation cache;
* ``OnnxPipeline.predict``: the model written by ``sk_decaf.to_onnx``, run by ``sk_decaf.deploy.runtime``
  (Pillow + numpy preprocessing, one onnxruntime session for network and classifier).

Both are warmed up first (network loaded, graphs exported and checked). The two are timed in alternation,
``--rounds`` times each, and the fastest round of each is compared, which is robust to other processes on a
shared machine. Images/s are printed for information; the figure is the ratio, measured in this run. The
first-call costs (export, session start) are reported separately, with the model's size, and so is the agreement
of the two ``decision_function`` outputs (largest difference relative to the largest score).

Usage: ``python benchmarks/bench_deploy.py [--data DIR] [--repeat 2] [--rounds 3] [--batch-size 32]``
(``--data``: a DIR/<class>/<image> folder; default the embedded demo set).
"""

import argparse
import os
import tempfile
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="DIR/<class>/<image> folder (default: the demo set)")
    parser.add_argument("--repeat", type=int, default=2, help="times the image list is repeated")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each (the fastest counts)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()

    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from sk_decaf import DeCAFTransformer, SignedSqrt, to_onnx
    from sk_decaf.datasets import load_demo, load_image_folder
    from sk_decaf.deploy import OnnxPipeline

    data = load_image_folder(args.data) if args.data else load_demo()
    images = list(data.paths) * args.repeat
    pipe = make_pipeline(DeCAFTransformer(args.backbone, batch_size=args.batch_size), SignedSqrt(), LinearSVC())
    pipe.fit(data.paths, data.target)
    warm = images[: args.batch_size]
    pipe.predict(warm)  # loads the network, exports and checks the engine's graph

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        start = time.perf_counter()
        to_onnx(pipe, path)
        export_s = time.perf_counter() - start
        size_mb = os.path.getsize(path) / 1e6
        start = time.perf_counter()
        served = OnnxPipeline(path, batch_size=args.batch_size)
        served.predict(warm)
        session_s = time.perf_counter() - start

        times = {"pipeline.predict": [], "OnnxPipeline.predict": []}
        agree = True
        for _ in range(args.rounds):
            start = time.perf_counter()
            expected = pipe.predict(images)
            times["pipeline.predict"].append(time.perf_counter() - start)
            start = time.perf_counter()
            got = served.predict(images)
            times["OnnxPipeline.predict"].append(time.perf_counter() - start)
            agree &= bool((got == expected).all())
        # Agreement of the scores on the distinct images: the largest difference relative to the largest score.
        expected = pipe.decision_function(list(data.paths))
        got = served.decision_function(list(data.paths))
        score_error = float(np.abs(got - expected).max() / np.abs(expected).max())

    best = {name: min(values) for name, values in times.items()}
    print(
        f"{len(images)} images ({'demo set' if not args.data else args.data} x {args.repeat}), {args.backbone}, "
        f"batch {args.batch_size}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"best of {args.rounds} rounds"
    )
    print(f"model {size_mb:.1f} MB; to_onnx {export_s:.1f} s; session start + warm-up {session_s:.1f} s")
    for name, seconds in best.items():
        print(f"  {name:<22} {seconds:7.2f} s  {len(images) / seconds:7.1f} img/s")
    print(
        f"speed-up of the exported model: {best['pipeline.predict'] / best['OnnxPipeline.predict']:.2f}x "
        f"(labels identical: {agree})"
    )
    print(
        f"decision_function, exported against the pipeline: max |difference| / max |score| = {score_error:.1e} "
        f"({len(data.paths)} images)"
    )


if __name__ == "__main__":
    main()
