"""Reading from bytes against reading from a path: the same images through the one reader, in one run, as ratios.

A Parquet column, a webdataset shard or an LMDB store hands the reader each image's encoded bytes instead of
a file name. This benchmark checks that those cost no more than paths. It prints, for the embedded demo
images (small JPEGs) and for 12-megapixel JPEGs (4032x3024, made from the demo images by
``bench_photos.make_photos``, decoded at a reduced DCT scale):

* **reader**: decoding and preparing one image (``load_rgb`` with the transformer's ``draft`` size, then its
  resize and crop to the uint8 network input) from the file's path, from its ``bytes`` already in memory,
  and from a ``BytesIO``;
* **transform**: ``DeCAFTransformer.transform`` end to end (decoding and the network, onnxruntime) on the
  paths and on the bytes;
* **cache hits**: ``transform`` with a warm activation cache, where only the content keys are computed: a
  path's digest is remembered per process (one ``stat``), bytes are hashed every time.

Each ratio is ``bytes / path`` of the throughputs (above 1: bytes are faster). The contenders alternate
within each of ``--repeat`` rounds and the medians are compared, so that a machine's load drifting during
the run moves both sides alike. The files are in the OS file cache (read once before timing); bytes are
read into memory before timing, as a column would hold them.

Usage::

    python benchmarks/bench_sources.py                       # 200 demo images, 32 photos, 5 rounds
    python benchmarks/bench_sources.py --photos 8 --repeat 3  # quicker
"""

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench_photos import make_photos


def _rate(fn, n):
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def interleaved(contenders, n, repeat):
    """``{name: median img/s}`` over ``repeat`` rounds in which every contender runs once, in turn."""
    rates = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            rates[name].append(_rate(fn, n))
    return {name: statistics.median(values) for name, values in rates.items()}


def measure(name, paths, repeat, cache_dir):
    from sk_decaf import DeCAFTransformer
    from sk_decaf._images import load_rgb
    from sk_decaf._torch.preprocess import make_preprocessor

    for path in paths:  # every file in the OS cache, for the paths as for the bytes
        Path(path).read_bytes()
    data = [Path(path).read_bytes() for path in paths]
    decaf = DeCAFTransformer().fit(paths)
    decaf.transform(paths[:8])  # ONNX export and check, outside the timings
    prep = make_preprocessor(decaf.data_config_, decaf.preprocess, decaf.decode)

    def reader(items):
        return lambda: [prep(load_rgb(item, draft=prep.draft_size)) for item in items()]

    rows = []
    reads = interleaved(
        {
            "path": reader(lambda: paths),
            "bytes": reader(lambda: data),
            "BytesIO": reader(lambda: [io.BytesIO(d) for d in data]),
        },
        len(paths),
        repeat,
    )
    rows.append(("reader (decode + resize/crop)", reads))
    ends = interleaved(
        {"path": lambda: decaf.transform(paths), "bytes": lambda: decaf.transform(data)}, len(paths), repeat
    )
    rows.append(("DeCAFTransformer.transform", ends))
    cached = DeCAFTransformer(cache=os.path.join(cache_dir, f"{name}.sqlite")).fit(paths)
    cached.transform(paths)  # fills the cache; bytes hit the same entries
    hits = interleaved(
        {"path": lambda: cached.transform(paths), "bytes": lambda: cached.transform(data)}, len(paths), repeat
    )
    rows.append(("transform, every image a cache hit", hits))
    size = sum(len(d) for d in data) / len(data) / 1e6
    print(f"\n{name}: {len(paths)} images, {size:.2f} MB each on average")
    print(f"{'measure':<40} {'path img/s':>11} {'bytes img/s':>12} {'BytesIO img/s':>14}  bytes / path")
    for label, rates in rows:
        bio = f"{rates['BytesIO']:14.1f}" if "BytesIO" in rates else f"{'':>14}"
        print(f"{label:<40} {rates['path']:11.1f} {rates['bytes']:12.1f} {bio}  {rates['bytes'] / rates['path']:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=32, help="12 MP photos")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the medians are compared")
    parser.add_argument("--demo", type=int, default=200, help="demo images (at most 200)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sk_decaf_photos"))
    args = parser.parse_args()
    import torch

    from sk_decaf.datasets import load_demo

    demo = list(load_demo().paths)[: args.demo]
    photos = make_photos(demo, Path(args.workdir), args.photos)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        f"{os.cpu_count()} cores, torch {torch.__version__}; load average at the start: "
        + (" ".join(f"{x:.2f}" for x in load) if load else "n/a")
    )
    with tempfile.TemporaryDirectory() as cache_dir:
        measure("demo images", demo, args.repeat, cache_dir)
        measure("12 MP photos, decode='reduced'", photos, args.repeat, cache_dir)
    if load is not None:
        print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
