"""Extraction speed: DeCAFTransformer against the best hand-written timm loops, in one run, as ratios.

CPU mode (the default) compares, for each backbone (EfficientNet-Lite0 with its ImageNet weights, and a ViT:
DINOv2 ViT-S/14 resized to 224 x 224, with random weights, which run as fast as its pretrained ones and need no
download), on the same images, network, weights and output (``pre_logits``):

* hand-written loops a skilled user would write with timm: ``timm.data.create_transform`` and PIL in the
  main process, ``torch.inference_mode``, channels-last memory, slices of 1, 4, 8 and 32 images; the same with
  ``torch.compile``; a tuned ``DataLoader`` (1 worker, prefetch); a hand ONNX export run with onnxruntime's
  default session, and the same with the two things DeCAFTransformer's onnxruntime engine adds: a session that
  does not spin its idle threads (``session.intra_op.allow_spinning = 0``) and the next batch decoded in a
  thread while the network runs (``onnx-tuned``); and that loop with the graph exported for a fixed batch
  size, the last batch padded, so that the exporter folds the shape computations into constants
  (``onnx-static``: what DeCAFTransformer's engine does to its dynamic-batch graph);
* the loops users often write first: one image at a time (img2vec-style), and a ``DataLoader`` with 2
  workers and batches of 32 in contiguous (NCHW) memory;
* ``DeCAFTransformer`` with each engine (onnxruntime, torch) and ``decode="exact"`` (timm's transform, so
  the same features as the loops), and with its defaults (``decode="reduced"``, which resamples differently).

Each contender runs in a fresh process (``python bench_extract.py --worker NAME``). Its *start-up* (network
load, transform, ONNX export and check, compilation, one warm-up batch) is timed apart from the timed pass
over every image, which gives img/s. Peak memory is the largest sum of the proportional set size (PSS) of
the process and its worker processes, sampled every 50 ms. Every contender's features must agree with
``DeCAFTransformer(engine="onnxruntime", decode="exact")`` (``np.allclose``, rtol 1e-3, atol 1e-4: different
engines, same maths); the script fails otherwise. The ratio column divides by the fastest hand-written loop
of the run.

CUDA mode (``--device cuda``) prints DeCAFTransformer's end-to-end img/s (JPEG decode in DataLoader workers,
copies, bf16 forward) against the network alone on random tensors already on the GPU, for
efficientnet_lite0, resnet50 and DINOv2 ViT-S/14 at 224 with random weights, batches of 256, bf16.

A backbone is ``NAME`` or ``NAME@SIZE`` (``DeCAFTransformer(NAME, input_size=SIZE)``); a network whose weights
do not ship offline (``sk_decaf.OFFLINE_WEIGHTS``) runs with random weights, seeded the same for every contender.

Usage::

    python benchmarks/bench_extract.py                      # CPU, 600 images (the demo set x 3), Lite0 and a ViT
    python benchmarks/bench_extract.py --limit 64           # a quick check on 64 images
    python benchmarks/bench_extract.py --backbone efficientnet_lite0   # Lite0 only
    python benchmarks/bench_extract.py --only onnx-tuned decaf-onnxruntime
    python benchmarks/bench_extract.py --device cuda        # GPU: 5,000 images per backbone
"""

import argparse
import concurrent.futures
import functools
import os
import sys
import tempfile
import time
import warnings

import numpy as np
from _common import agreement, demo_paths, elapsed, format_table, run_worker, warm_files, write_result

SCRIPT = os.path.abspath(__file__)


#: CPU mode's backbones: Lite0, and a ViT at 224 x 224 (DINOv2 is built for 518).
CPU_BACKBONES = ("efficientnet_lite0", "vit_small_patch14_dinov2.lvd142m@224")


#: The seed of random weights that DeCAFTransformer(random_state=0) draws: the loops build the same network.
RANDOM_SEED = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))


def parse_backbone(spec):
    """``NAME`` or ``NAME@SIZE`` -> (name, input size or None, weights): random where none ship offline."""
    from sk_decaf._torch.backbones import OFFLINE_WEIGHTS

    name, _, size = spec.partition("@")
    return name, int(size) if size else None, None if name in OFFLINE_WEIGHTS else "random"


# -- the hand-written loops ------------------------------------------------------------------------------
def _hand_model(backbone):
    """The network DeCAFTransformer runs (same architecture and weights), with timm's eval transform."""
    import timm.data

    from sk_decaf._torch.backbones import load_backbone

    name, size, weights = parse_backbone(backbone)
    loaded = load_backbone(name, weights=weights, input_size=size, seed=RANDOM_SEED)
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return loaded.model, timm.data.create_transform(**{k: loaded.data_config[k] for k in keys})


def _pre_logits(model, x):
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _decode(path, transform):
    from PIL import Image

    with Image.open(path) as img:
        return transform(img.convert("RGB"))


class _Files:
    """A map-style dataset of decoded, transformed images, for the DataLoader loops."""

    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return _decode(self.paths[i], self.transform)


def hand_slices(args, paths, *, size, channels_last=True, compile=False):
    """Decode ``size`` images in the main process, forward them together: the loop a skilled user writes."""
    import torch

    start = time.perf_counter()
    model, transform = _hand_model(args.backbone)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = functools.partial(_pre_logits, model)
    if compile:
        forward = torch.compile(forward)

    def run(chunk):
        x = torch.stack([_decode(p, transform) for p in chunk])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return forward(x)

    with torch.inference_mode():
        run(paths[:size])  # warm-up (and, with torch.compile, compilation)
        if len(paths) % size:  # the last, shorter slice: compiled ahead too
            run(paths[: len(paths) % size])
    first = elapsed(start)
    start = time.perf_counter()
    with torch.inference_mode():
        out = torch.cat([run(paths[i : i + size]) for i in range(0, len(paths), size)])
    return out.numpy(), first, elapsed(start)


def hand_loader(args, paths, *, size, workers, channels_last, prefetch=None):
    """A torch DataLoader decoding in ``workers`` processes, batches of ``size``."""
    import torch
    from torch.utils.data import DataLoader

    start = time.perf_counter()
    model, transform = _hand_model(args.backbone)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(
        _Files(paths, transform),
        batch_size=size,
        num_workers=workers,
        prefetch_factor=prefetch,
        persistent_workers=prefetch is not None,
    )

    def run(x):
        return _pre_logits(model, x.contiguous(memory_format=torch.channels_last) if channels_last else x)

    with torch.inference_mode():
        run(next(iter(loader)))  # warm-up batch
    first = elapsed(start)
    start = time.perf_counter()
    with torch.inference_mode():
        out = torch.cat([run(x) for x in loader])
    return out.numpy(), first, elapsed(start)


def _prefetched(chunks, decode):
    """Yield ``decode(chunk)`` for each chunk, decoding the next chunk in a thread while the caller works.

    PIL decodes and resizes without holding the GIL, so the thread's decoding overlaps the network.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(decode, chunks[0]) if chunks else None
        for following in chunks[1:] + [None]:
            ready = pending.result()
            pending = pool.submit(decode, following) if following is not None else None
            yield ready


def hand_onnx(args, paths, *, size, tuned=False, static=False):
    """Export the network to ONNX by hand (``torch.onnx.export``) and run it with onnxruntime.

    ``tuned=False``: onnxruntime's default session, images decoded between the batches. ``tuned=True``: what a
    skilled user adds, the two things DeCAFTransformer's own onnxruntime engine does: a session whose idle
    threads sleep instead of spinning (``session.intra_op.allow_spinning = 0``, so they leave the cores to
    the decoding) and the next batch decoded in a thread while the network runs on this one. ``static=True``:
    the graph is exported for batches of exactly ``size`` (the last one padded), so the exporter folds every
    shape computation into constants, as DeCAFTransformer's engine folds them in a graph with a dynamic batch.
    """
    import onnxruntime as ort
    import torch

    class PreLogits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return _pre_logits(self.model, x)

    start = time.perf_counter()
    model, transform = _hand_model(args.backbone)
    path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    example = _decode(paths[0], transform).unsqueeze(0)
    if static:
        example = example.expand(size, *example.shape[1:]).contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter: no onnxscript needed
        torch.onnx.export(
            PreLogits(model),
            (example,),
            path,
            dynamo=False,
            input_names=["x"],
            output_names=["f"],
            dynamic_axes=None if static else {"x": {0: "n"}, "f": {0: "n"}},
            opset_version=17,
        )
    options = ort.SessionOptions()
    if tuned:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def decode(chunk):
        return np.stack([_decode(p, transform).numpy() for p in chunk])

    def run(x):
        if static and len(x) < size:  # the last batch, padded to the graph's batch size
            padded = np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])
            return session.run(None, {"x": padded})[0][: len(x)]
        return session.run(None, {"x": x})[0]

    run(decode(paths[:size]))  # warm-up batch
    first = elapsed(start)
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    start = time.perf_counter()
    batches = _prefetched(chunks, decode) if tuned else (decode(c) for c in chunks)
    out = np.concatenate([run(x) for x in batches])
    return out, first, elapsed(start)


# -- the library -----------------------------------------------------------------------------------------
def decaf(args, paths, **params):
    from sk_decaf import DeCAFTransformer

    start = time.perf_counter()
    name, size, weights = parse_backbone(args.backbone)
    est = DeCAFTransformer(
        name, weights=weights, input_size=size, random_state=0, batch_size=args.batch_size, device="cpu", **params
    )
    est.fit(paths)
    est.transform(paths[: args.batch_size])  # warm-up: loads the network, exports and checks the ONNX graph
    first = elapsed(start)
    start = time.perf_counter()
    X = est.transform(paths)
    return X, first, elapsed(start)


def _contenders(batch_size):
    """``{name: (label, function, keyword arguments, kind)}`` in the order they run.

    ``kind`` is "hand" (a hand-written loop), "decaf" (the same output as timm's transform, checked), or
    "default" (DeCAFTransformer's defaults: ``decode="reduced"`` resamples differently, so its features are
    shown against the reference but not required to agree).
    """
    b = batch_size
    return {
        "loader-2w": (
            f"DataLoader 2 workers, batches of {b}, NCHW (old baseline)",
            hand_loader,
            dict(size=b, workers=2, channels_last=False),
            "hand",
        ),
        "one-at-a-time": (
            "one image at a time, NCHW (img2vec-style)",
            hand_slices,
            dict(size=1, channels_last=False),
            "hand",
        ),
        "slices-1": ("hand loop, channels_last, slices of 1", hand_slices, dict(size=1), "hand"),
        "slices-4": ("hand loop, channels_last, slices of 4", hand_slices, dict(size=4), "hand"),
        "slices-8": ("hand loop, channels_last, slices of 8", hand_slices, dict(size=8), "hand"),
        "slices-32": ("hand loop, channels_last, slices of 32", hand_slices, dict(size=32), "hand"),
        "compile-4": ("hand loop + torch.compile, slices of 4", hand_slices, dict(size=4, compile=True), "hand"),
        "loader-1w": (
            "DataLoader 1 worker, prefetch 4, slices of 4",
            hand_loader,
            dict(size=4, workers=1, channels_last=True, prefetch=4),
            "hand",
        ),
        "onnx-hand": (f"hand ONNX export + onnxruntime defaults, batches of {b}", hand_onnx, dict(size=b), "hand"),
        "onnx-tuned": (
            f"hand ONNX export + onnxruntime, no spinning, decoding prefetched in a thread, batches of {b}",
            hand_onnx,
            dict(size=b, tuned=True),
            "hand",
        ),
        "onnx-static": (
            f"hand ONNX export for a fixed batch of {b} (shapes folded by the exporter), no spinning, prefetched",
            hand_onnx,
            dict(size=b, tuned=True, static=True),
            "hand",
        ),
        "decaf-onnxruntime": (
            "DeCAFTransformer(engine='onnxruntime', decode='exact')",
            decaf,
            dict(engine="onnxruntime", decode="exact"),
            "decaf",
        ),
        "decaf-torch": (
            "DeCAFTransformer(engine='torch', decode='exact')",
            decaf,
            dict(engine="torch", decode="exact"),
            "decaf",
        ),
        "decaf-default": ("DeCAFTransformer() defaults (decode='reduced')", decaf, {}, "default"),
    }


REFERENCE = "decaf-onnxruntime"  # the default engine on a CPU: the other contenders are checked against it


def run_cpu(args):
    for spec in args.backbones:
        args.backbone = spec
        run_cpu_backbone(args)


def run_cpu_backbone(args):
    contenders = _contenders(args.batch_size)
    names = args.only or list(contenders)
    unknown = sorted(set(names) - set(contenders))
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}; choose from {list(contenders)}")
    result_dir = tempfile.mkdtemp(prefix="bench_extract_")
    passthrough = ["--backbone", args.backbone, "--batch-size", str(args.batch_size), "--repeat", str(args.repeat)]
    if args.limit:
        passthrough += ["--limit", str(args.limit)]
    results = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name], peak = run_worker(SCRIPT, name, passthrough, result_dir)
        results[name]["peak_mb"] = peak
        print(
            f"  {results[name]['rate']:.1f} img/s, start-up {results[name]['first']:.1f} s, peak {peak:.0f} MB",
            file=sys.stderr,
            flush=True,
        )

    checked = [n for n in names if contenders[n][3] == "decaf"]
    reference_name = REFERENCE if REFERENCE in results else (checked or names)[0]
    reference = np.load(os.path.join(result_dir, f"{reference_name}.npy"))
    hand = [n for n in names if contenders[n][3] == "hand"]
    best = max(hand, key=lambda n: results[n]["rate"]) if hand else None
    n = results[names[0]]["n_images"]
    name, size, weights = parse_backbone(args.backbone)
    what = f"backbone {name}" + (f" at {size} x {size}" if size else "") + (", random weights" if weights else "")
    print(
        f"\n{n} images (the demo set x {args.repeat}{f', first {args.limit}' if args.limit else ''}), "
        f"{what}, pre_logits features, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end; each contender in a fresh process\n"
    )
    rows, failed = [], []
    for name in names:
        r = results[name]
        ratio = f"{r['rate'] / results[best]['rate']:.2f}x" if best else "-"
        ok, diff = agreement(np.load(os.path.join(result_dir, f"{name}.npy")), reference)
        if contenders[name][3] == "default":
            check = f"{diff:.1e} (not required)"
        else:
            check = f"{diff:.1e}" if ok else f"FAIL {diff:.1e}"
            failed += [] if ok else [name]
        label = contenders[name][0] + (" *" if name == best else "")
        rows.append((label, f"{r['rate']:.1f}", ratio, f"{r['first']:.2f}", f"{r['peak_mb']:.0f}", check))
    header = ("method", "img/s", "x best hand", "start-up s", "peak MB", f"max |diff| vs {reference_name}")
    print("\n".join(format_table(header, rows)))
    if best:
        print(f"\n* the fastest hand-written loop of this run: {contenders[best][0]}")
    if failed:
        raise SystemExit(f"features disagree with {reference_name} (rtol 1e-3, atol 1e-4): {failed}")


# -- CUDA ------------------------------------------------------------------------------------------------
GPU_BACKBONES = ("efficientnet_lite0", "resnet50", "vit_small_patch14_dinov2.lvd142m@224")


def gpu_model_alone(args, paths, *, backbone):
    """The network alone: random float tensors already on the GPU, channels_last, bf16 autocast."""
    import torch

    from sk_decaf._torch.backbones import load_backbone

    start = time.perf_counter()
    name, size, _ = parse_backbone(backbone)
    loaded = load_backbone(name, weights="random", input_size=size)
    model = loaded.model.cuda().eval().to(memory_format=torch.channels_last)
    x = torch.randn(args.gpu_batch_size, *loaded.data_config["input_size"], device="cuda")
    x = x.contiguous(memory_format=torch.channels_last)
    steps = max(20, len(paths) // args.gpu_batch_size)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):  # warm-up: cuDNN autotuning, allocator
            _pre_logits(model, x)
        torch.cuda.synchronize()
        first = elapsed(start)
        start = time.perf_counter()
        for _ in range(steps):
            out = _pre_logits(model, x)
        torch.cuda.synchronize()
    seconds = elapsed(start)
    return steps * args.gpu_batch_size, first, seconds, int(out.shape[1])


def gpu_decaf(args, paths, *, backbone):
    """DeCAFTransformer end to end: paths in, float32 numpy out (decode, copy, bf16 forward, copy back)."""
    import torch

    from sk_decaf import DeCAFTransformer

    start = time.perf_counter()
    name, size, _ = parse_backbone(backbone)
    est = DeCAFTransformer(
        name,
        weights="random",
        input_size=size,
        device="cuda",
        batch_size=args.gpu_batch_size,
        precision="bfloat16",
    ).fit(paths)
    est.transform(paths[: args.gpu_batch_size])  # warm-up: network load, cuDNN autotuning, worker start
    torch.cuda.synchronize()
    first = elapsed(start)
    start = time.perf_counter()
    X = est.transform(paths)
    return len(paths), first, elapsed(start), X.shape[1]


def run_gpu(args):
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda needs a CUDA GPU, and torch.cuda.is_available() is False here. "
            "Run without --device for the CPU comparison."
        )
    result_dir = tempfile.mkdtemp(prefix="bench_extract_gpu_")
    passthrough = ["--device", "cuda", "--repeat", str(args.repeat), "--gpu-batch-size", str(args.gpu_batch_size)]
    if args.limit:
        passthrough += ["--limit", str(args.limit)]
    rows, device = [], ""
    for backbone in args.gpu_backbones:
        figures = {}
        for kind in ("model", "decaf"):
            name = f"gpu-{kind}:{backbone}"
            print(f"running {name} ...", file=sys.stderr, flush=True)
            figures[kind], figures[kind + "_mb"] = run_worker(SCRIPT, name, passthrough, result_dir)
        model, dec = figures["model"], figures["decaf"]
        device = dec["device"]
        rows.append(
            (
                backbone,
                f"{model['rate']:.0f}",
                f"{dec['rate']:.0f}",
                f"{dec['rate'] / model['rate']:.2f}",
                f"{model['first']:.1f}",
                f"{dec['first']:.1f}",
                f"{figures['decaf_mb']:.0f}",
                f"{dec['gpu_mb']:.0f}",
                str(dec["n_images"]),
            )
        )
    print(
        f"\n{device}, {os.cpu_count()} CPU cores; random weights, batches of {args.gpu_batch_size}, bf16 "
        "autocast, channels_last, pre_logits; each in a fresh process\n"
    )
    header = (
        "backbone",
        "model alone img/s",
        "DeCAFTransformer img/s",
        "ratio",
        "start-up s (model)",
        "start-up s (DeCAF)",
        "host peak MB (DeCAF)",
        "GPU peak MB (DeCAF)",
        "images",
    )
    print("\n".join(format_table(header, rows)))
    print(
        "\nmodel alone: random tensors already on the GPU, no decoding or copies (an upper bound); "
        "DeCAFTransformer: JPEG paths in (the demo images), float32 numpy out."
    )


# -- entry points ----------------------------------------------------------------------------------------
def worker(args):
    """Run one contender in this (fresh) process and write its figures for the driver."""
    os.environ["SK_DECAF_HOME"] = tempfile.mkdtemp()  # a cold ONNX export, as a new user gets
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()  # and a cold torch.compile
    paths = demo_paths(args.repeat, args.limit)
    warm_files(paths)
    name = args.worker
    if name.startswith("gpu-"):
        kind, backbone = name[len("gpu-") :].split(":", 1)
        function = gpu_model_alone if kind == "model" else gpu_decaf
        n, first, seconds, dim = function(args, paths, backbone=backbone)
        import torch

        write_result(
            args.result_dir,
            name,
            rate=n / seconds,
            first=first,
            n_images=n,
            n_features=dim,
            device=torch.cuda.get_device_name(),
            gpu_mb=torch.cuda.max_memory_allocated() / 2**20,
        )
        return
    _, function, kwargs, _ = _contenders(args.batch_size)[name]
    features, first, seconds = function(args, paths, **kwargs)
    write_result(args.result_dir, name, features, rate=len(paths) / seconds, first=first, n_images=len(paths))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="passes over the 200 demo images (default: 3 on the CPU, 25 with --device cuda)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first LIMIT images (quick checks)")
    parser.add_argument("--batch-size", type=int, default=32, help="CPU: DeCAFTransformer's and the loaders' batch")
    parser.add_argument(
        "--backbone",
        dest="backbones",
        nargs="+",
        default=list(CPU_BACKBONES),
        metavar="NAME[@SIZE]",
        help=f"CPU mode's networks, one table each (default: {' '.join(CPU_BACKBONES)})",
    )
    parser.add_argument("--only", nargs="+", default=None, help="CPU contenders to run (default: all)")
    parser.add_argument("--gpu-batch-size", type=int, default=256)
    parser.add_argument("--gpu-backbones", nargs="+", default=list(GPU_BACKBONES))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 25 if args.device == "cuda" else 3
    if args.worker:
        args.backbone = args.backbones[0]
        worker(args)
    elif args.device == "cuda":
        run_gpu(args)
    else:
        run_cpu(args)


if __name__ == "__main__":
    main()
