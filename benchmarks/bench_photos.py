"""Phone-sized photos against thumbnails: 12-megapixel JPEGs through DeCAFTransformer, in one run, as ratios.

**What the photos are.** Not camera photos: the small demo images (Caltech-101, about 300x200 pixels) upscaled
to about 12 megapixels (4032x3024 for a 4:3 image; the aspect ratio is kept) with a Lanczos filter, plus
uniform noise of +-6 grey levels per channel (standard deviation 3.7), saved as quality-90 JPEGs (about 1.8 MB
each). The noise gives the JPEG decoder the entropy of a real photo's fine detail, so decoding costs what a
12 MP JPEG of that file size costs; the picture itself holds no more detail than the thumbnail it came from.
They are written once into ``--workdir``.

Prints, on the same machine and in the same process, every rate as the best of ``--repeat`` timed passes:

* the machine's limit on the small demo images: the network alone (onnxruntime on already-decoded uint8
  batches) and decoding alone (one core), combined as ``1 / (1 / model + 1 / decode)``;
* ``DeCAFTransformer`` end to end on the demo images, as a fraction of that limit (target >= 0.9);
* ``DeCAFTransformer`` end to end on the 12 MP photos with ``decode="reduced"`` (the default) and
  ``decode="exact"``, as a fraction of the small-image throughput (target >= 0.5);
* the costs on one core that bound the photos' throughput: decoding and resizing a photo exactly
  (``decode="exact"``), at reduced DCT scale (``decode="reduced"``), and the reduced JPEG decoding alone without
  the resize and crop; the network alone on one thread;
* the machine's limit on those photos: every core busy, an image costing its reduced decoding (one core) plus
  the network's core-seconds, ``C / (C / model + 1 / decode)`` on ``C`` cores; and a looser bound that counts
  the network at its one-thread cost and the resize and crop as free, ``C / (1 / model_1 + 1 / jpeg)``. No
  scheduling of decoding and network can beat either, so when they are below half the small-image throughput
  the 0.5 target cannot be met on that machine.

With ``--accuracy`` it also compares the accuracy of ``decode="reduced"`` and ``"exact"`` (EfficientNet-Lite0
``pre_logits`` + LinearSVC, mean per-class accuracy), on the demo set (5-fold CV) and on Office-Caltech-10
(within-domain: 20 training images per class for amazon and caltech10, 8 for dslr and webcam, 5 splits) when
``../shared/data`` exists, twice: on the original images, and on 12 MP versions of the same images made as
above (aspect kept, Lanczos, noise, quality 90). On the originals the two decodings differ little (300 pixels
or less on a side decode at full size in both modes, dslr's 1000x1000 at 1/2 scale); on the 12 MP versions
``"reduced"`` decodes at 1/8 scale and ``"exact"`` at full size, which is the case the claim is about.

Usage::

    python benchmarks/bench_photos.py                 # speed: 160 photos, 200 demo images
    python benchmarks/bench_photos.py --accuracy      # also the accuracy (12 MP Office-Caltech: an hour or more)
    python benchmarks/bench_photos.py --quick --accuracy   # check that it runs: 16 photos, demo set only
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PIXELS = 4032 * 3024  # a 12 MP phone photo
NOISE = 6  # uniform noise in [-NOISE, NOISE] grey levels


def upscale_jpeg(source, path, seed):
    """Write ``source`` upscaled to about 12 MP (aspect kept, Lanczos), plus noise, as a quality-90 JPEG."""
    img = Image.open(source).convert("RGB")
    scale = (PIXELS / (img.width * img.height)) ** 0.5
    size = (round(img.width * scale), round(img.height * scale))
    big = np.asarray(img.resize(size, Image.Resampling.LANCZOS), dtype=np.int16)
    big = big + np.random.default_rng(seed).integers(-NOISE, NOISE + 1, big.shape, dtype=np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.jpg")
    Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(tmp, quality=90)
    os.replace(tmp, path)  # a killed run leaves no half-written photo to reuse


def make_photos(sources, folder, n=None):
    """12 MP versions of ``sources`` (cycled to ``n`` when given) in ``folder``; reused when already there."""
    n = len(sources) if n is None else n
    out = []
    for i in range(n):
        path = Path(folder) / f"photo_{i:05d}.jpg"
        if not path.exists():
            upscale_jpeg(sources[i % len(sources)], path, seed=i)
        out.append(str(path))
    return out


def rate(fn, n, repeat):
    """Images per second of ``fn`` (which handles ``n`` images): the best of ``repeat`` timed calls."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def throughput(demo_paths, photos, repeat):
    import torch

    from sk_decaf import DeCAFTransformer
    from sk_decaf._images import load_rgb
    from sk_decaf._torch.engines import OnnxEngine

    cores = os.cpu_count() or 1
    decaf = DeCAFTransformer().fit(demo_paths)
    decaf.transform(demo_paths[:8])  # ONNX export and check, outside the timings
    featurizer = decaf._network.get(decaf)  # the library's own preprocessing and engine
    prep = featurizer.transform
    batch = torch.stack([prep(load_rgb(p, draft=prep.draft_size)) for p in demo_paths])
    engine = featurizer.engine
    exact = DeCAFTransformer(decode="exact").fit(photos)
    exact.transform(photos[:2])
    exact_prep = exact._network.get(exact).transform
    one_thread = OnnxEngine(featurizer.onnx_path(), threads=1)

    def model_alone(engine):
        for start in range(0, len(batch), decaf.batch_size):
            engine.result(engine.submit(batch[start : start + decaf.batch_size]))

    def decode_alone(paths, transform):
        for p in paths:
            transform(load_rgb(p, draft=getattr(transform, "draft_size", None)))

    def jpeg_alone(paths):
        for p in paths:
            load_rgb(p, draft=prep.draft_size)

    some = photos[:16]
    rows = {}  # name -> (img/s, cores the figure occupies, or None for end-to-end rows)
    torch.set_num_threads(1)
    rows["decode alone, 1 core (demo)"] = (rate(lambda: decode_alone(demo_paths, prep), len(demo_paths), repeat), 1)
    rows["decode alone, 1 core (12 MP, exact)"] = (rate(lambda: decode_alone(some, exact_prep), len(some), repeat), 1)
    rows["decode alone, 1 core (12 MP, reduced)"] = (rate(lambda: decode_alone(some, prep), len(some), repeat), 1)
    rows["JPEG at reduced scale only, 1 core (12 MP)"] = (rate(lambda: jpeg_alone(some), len(some), repeat), 1)
    rows["model alone, 1 thread (demo)"] = (rate(lambda: model_alone(one_thread), len(batch), repeat), 1)
    torch.set_num_threads(cores)
    rows["model alone (demo)"] = (rate(lambda: model_alone(engine), len(batch), repeat), cores)
    model, decode = rows["model alone (demo)"][0], rows["decode alone, 1 core (demo)"][0]
    limit = 1 / (1 / model + 1 / decode)
    rows["limit: model + decode (demo)"] = (limit, None)
    photo_decode = rows["decode alone, 1 core (12 MP, reduced)"][0]
    photo_limit = cores / (cores / model + 1 / photo_decode)
    rows["limit, 12 MP: all cores busy"] = (photo_limit, None)
    model_1, jpeg = rows["model alone, 1 thread (demo)"][0], rows["JPEG at reduced scale only, 1 core (12 MP)"][0]
    rows["bound, 12 MP: network at 1-thread cost, resize free"] = (cores / (1 / model_1 + 1 / jpeg), None)
    small = rate(lambda: decaf.transform(demo_paths), len(demo_paths), repeat)
    rows["DeCAFTransformer (demo)"] = (small, None)
    reduced = rate(lambda: decaf.transform(photos), len(photos), repeat)
    rows["DeCAFTransformer, 12 MP, decode='reduced'"] = (reduced, None)
    rows["DeCAFTransformer, 12 MP, decode='exact'"] = (rate(lambda: exact.transform(photos), len(photos), repeat), None)

    print(f"\n{'measure':<52} {'img/s':>8} {'ms/img':>8} {'core-ms':>8}  ratio")
    for name, (value, busy) in rows.items():
        if name == "DeCAFTransformer, 12 MP, decode='reduced'":
            ratio = f"{value / small:.2f}x small, {value / photo_limit:.2f}x 12 MP limit"
        elif name == "DeCAFTransformer, 12 MP, decode='exact'":
            ratio = f"{value / small:.2f}x small; reduced is {reduced / value:.1f}x faster"
        elif name.startswith(("limit, 12", "bound, 12")):
            ratio = f"{value / small:.2f}x small"
        elif name == "DeCAFTransformer (demo)":
            ratio = f"{value / limit:.2f}x limit"
        else:
            ratio = ""
        core_ms = f"{1000 * busy / value:8.1f}" if busy else " " * 8
        print(f"{name:<52} {value:8.1f} {1000 / value:8.1f} {core_ms}  {ratio}")
    print("ms/img: wall-clock per image; core-ms: the cores the measure keeps busy x ms/img")
    return rows


def _report(name, paths, y, scorer):
    from sk_decaf import DeCAFTransformer

    ex, red = (DeCAFTransformer(decode=d).fit(paths).transform(paths) for d in ("exact", "reduced"))
    change = np.abs(red - ex).mean() / np.abs(ex).mean()
    print(
        f"{name:<40} exact {scorer(ex, y):6.2f}   reduced {scorer(red, y):6.2f}   "
        f"mean |change| / mean |feature| = {change:.4f}",
        flush=True,
    )


def _cv(X, y):
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.svm import LinearSVC

    pred = cross_val_predict(LinearSVC(), X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    return 100 * balanced_accuracy_score(y, pred)


def _within(domain):
    def score(X, y):
        from sklearn.metrics import balanced_accuracy_score
        from sklearn.svm import LinearSVC

        from sk_decaf.model_selection import PerClassSplit

        splits = PerClassSplit(
            n_train=8 if domain in ("dslr", "webcam") else 20, n_splits=5, random_state=0, too_few="shrink"
        ).split(X, y)
        scores = [
            100 * balanced_accuracy_score(y[test], LinearSVC().fit(X[train], y[train]).predict(X[test]))
            for train, test in splits
        ]
        return float(np.mean(scores))

    return score


def accuracy(datasets, workdir):
    """``datasets``: ``[(key, name, paths, y, scorer)]``; each on its original images, then on 12 MP versions."""
    print("\nmean per-class accuracy, EfficientNet-Lite0 pre_logits + LinearSVC")
    print("\noriginal images:")
    for _, name, paths, y, scorer in datasets:
        _report(name, paths, y, scorer)
    print("\nthe same images upscaled to 12 MP (Lanczos, +-6 noise, JPEG quality 90):")
    for key, name, paths, y, scorer in datasets:
        start = time.perf_counter()
        folder = Path(workdir) / "large" / key
        large = make_photos(paths, folder)
        size = np.mean([os.path.getsize(p) for p in large]) / 1e6
        made = time.perf_counter() - start
        _report(f"{name} ({size:.1f} MB/photo)", large, y, scorer)
        print(f"  ({len(large)} photos ready in {made:.0f} s)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=160, help="12 MP photos (a job of several batches)")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes of every measure (the best counts)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sk_decaf_photos_v2"))
    parser.add_argument("--accuracy", action="store_true", help="also decode='reduced' against 'exact' accuracy")
    parser.add_argument(
        "--domains",
        nargs="*",
        default=["amazon", "caltech10", "dslr", "webcam"],
        help="Office-Caltech-10 domains of the accuracy check (default: all four; none: the demo set only)",
    )
    parser.add_argument("--no-speed", action="store_true", help="skip the timings (with --accuracy)")
    parser.add_argument("--quick", action="store_true", help="check that it runs: 16 photos, 1 pass, demo set only")
    args = parser.parse_args()
    if args.quick:
        args.photos, args.repeat, args.domains = 16, 1, []
    from sk_decaf.datasets import load_demo

    demo = load_demo()
    demo_paths = list(demo.paths)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    if not args.no_speed:
        photos = make_photos(demo_paths, Path(args.workdir) / "speed", args.photos)
        size = np.mean([os.path.getsize(p) for p in photos]) / 1e6
        print(
            f"{len(demo_paths)} demo images; {len(photos)} photos of about 12 MP ({size:.1f} MB each): the demo "
            f"images upscaled (Lanczos) with +-{NOISE} noise, JPEG quality 90; best of {args.repeat} passes"
        )
        throughput(demo_paths, photos, args.repeat)
    if args.accuracy:
        datasets = [("demo", "demo set, 5-fold CV", demo_paths, np.asarray(demo.target), _cv)]
        root = Path(os.environ.get("SK_DECAF_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
        if args.domains and not root.is_dir():
            print(f"({root} not found: Office-Caltech-10 skipped)")
        elif args.domains:
            from sk_decaf.datasets import load_office_caltech10

            for domain in args.domains:
                data = load_office_caltech10(root / "office_caltech10", domain=domain)
                datasets.append(
                    (domain, f"Office-Caltech {domain}", list(data.paths), np.asarray(data.target), _within(domain))
                )
        accuracy(datasets, args.workdir)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
