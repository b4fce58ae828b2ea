"""Dask overhead: ``transform_dask`` on a LocalCluster against the local ``transform``, in one run, as ratios.

Compared on the demo set (200 images), the default network (EfficientNet-Lite0, ImageNet weights) and engine:

* ``DeCAFTransformer.transform`` in this process (the network on every core);
* ``transform_dask`` on ``LocalCluster(n_workers=W, threads_per_worker=1, processes=True)``;
* ``extract_shards`` (``.npy`` shards of 25 images and a manifest) in this process and on the same cluster.

Both are warm: the local transformer has run once, and every worker has loaded the network (a first
``transform_dask`` call; later calls with the same fitted transformer find it loaded). The runs alternate,
``--repeat`` times each, and the median is kept, so that load from other processes on the machine hits both
alike. The cold start (cluster start, first call on the workers) is printed separately. Images/s are for
information; the comparison is the ratio to the local transform, measured in this run.

Usage: ``python benchmarks/bench_dask.py [--workers 2] [--chunksize 25] [--repeat 3] [--images 200]``
"""

import argparse
import os
import statistics
import tempfile
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunksize", type=int, nargs="+", default=[25, 50])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from sk_decaf import DeCAFTransformer
    from sk_decaf.datasets import load_demo
    from sk_decaf.parallel import extract_shards, load_shards, transform_dask

    demo = load_demo().paths
    paths = (demo * (args.images // len(demo) + 1))[: args.images]
    est = DeCAFTransformer(args.backbone).fit(paths)
    local = est.transform(paths[:32])  # warm-up: network loaded, ONNX graph exported and checked
    print(f"{len(paths)} images, {args.backbone}, engine {est.engine_}, {os.cpu_count()} CPUs")

    start = time.perf_counter()
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        up = time.perf_counter() - start
        start = time.perf_counter()
        transform_dask(est, paths[: 8 * args.workers], chunksize=8).compute()  # each worker loads the network
        first = time.perf_counter() - start
        print(f"cold start: cluster {up:.1f} s, first call (network load on each worker) {first:.1f} s")

        times = {"local": [], "shards": [], "shards on the cluster": []} | {c: [] for c in args.chunksize}
        for _ in range(args.repeat):
            start = time.perf_counter()
            local = est.transform(paths)
            times["local"].append(time.perf_counter() - start)
            for c in args.chunksize:
                start = time.perf_counter()
                X = transform_dask(est, paths, chunksize=c).compute()
                times[c].append(time.perf_counter() - start)
                err = float(abs(X - local).max())
                assert err < 1e-4, err
            for key, where in (("shards", None), ("shards on the cluster", client)):
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    extract_shards(est, paths, os.path.join(tmp, "out"), shard_size=25, client=where)
                    times[key].append(time.perf_counter() - start)
                    err = float(abs(load_shards(os.path.join(tmp, "out")).features - local).max())
                    assert err < 1e-4, err
        builds = client.run(lambda: __import__("sk_decaf.parallel._worker", fromlist=["_LOADED"])._LOADED.__len__())

    base = statistics.median(times["local"])
    print(f"\n{'method':<52} {'img/s':>7} {'ratio':>6}")
    print(f"{'DeCAFTransformer.transform (local)':<52} {len(paths) / base:>7.1f} {1:>6.2f}")
    for c in args.chunksize:
        t = statistics.median(times[c])
        label = f"transform_dask, {args.workers} workers x 1 thread, chunksize {c}"
        print(f"{label:<52} {len(paths) / t:>7.1f} {base / t:>6.2f}")
    for key, label in (
        ("shards", "extract_shards, 25 per shard, in this process"),
        ("shards on the cluster", f"extract_shards, 25 per shard, {args.workers} workers x 1 thread"),
    ):
        t = statistics.median(times[key])
        print(f"{label:<52} {len(paths) / t:>7.1f} {base / t:>6.2f}")
    print(f"\nmax |dask - local| < 1e-4; transformers loaded per worker: {sorted(builds.values())}")


if __name__ == "__main__":
    main()
