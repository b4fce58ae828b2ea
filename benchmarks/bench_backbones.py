"""Backbone speed: images per second of today's families on the CPU, at 224 and at their own size, against Lite0.

For each backbone of the guide (docs/backbones.md): ``DeCAFTransformer(backbone, weights="random",
input_size=size)`` with its defaults otherwise (the default engine: onnxruntime on a CPU, the pooled
pre-logits, ``decode="reduced"``), at ``input_size=224`` and at the network's own size (``input_size=None``)
where that differs. Random weights run exactly as fast as the pretrained ones (same architecture, same
operations) and need no download, so every family is measured on any machine.

Each (backbone, size) runs in a fresh process (``python bench_backbones.py --worker NAME@SIZE``): the network
is built, exported to ONNX and checked, and one warm-up batch runs, apart from the timed pass over the demo
images, which gives img/s and the CPU time per image of the process (all its threads). "× Lite0" divides by
EfficientNet-Lite0's img/s at its own size (224) in the same run; "CPU × Lite0" divides CPU times, which follow
the other processes' load on a shared machine much less than wall-clock rates. Lite0 is timed again at the end,
to show the drift.

Usage::

    python benchmarks/bench_backbones.py                    # every backbone, the 200 demo images
    python benchmarks/bench_backbones.py --limit 16         # a quick check
    python benchmarks/bench_backbones.py --only efficientnet_lite0 vit_small_patch14_dinov2.lvd142m
"""

import argparse
import os
import platform
import sys
import tempfile
import time

from _common import demo_paths, run_worker, warm_files, write_result

SCRIPT = os.path.abspath(__file__)

#: The guide's backbones, in its order: label -> timm name. The first is the reference of the ratios.
BACKBONES = {
    "EfficientNet-Lite0": "efficientnet_lite0",
    "EfficientNet-Lite1": "efficientnet_lite1",
    "EfficientNet-Lite2": "efficientnet_lite2",
    "DINOv2 ViT-S/14": "vit_small_patch14_dinov2.lvd142m",
    "CLIP ViT-B/16": "vit_base_patch16_clip_224.openai",
    "ConvNeXt-T": "convnext_tiny",
    "EVA-02-T": "eva02_tiny_patch14_224.mim_in22k",
    "ResNet-50": "resnet50",
    "RegNetY-800MF": "regnety_008",
    "Swin-T": "swin_tiny_patch4_window7_224",
    "DeiT-T": "deit_tiny_patch16_224",
    "MobileNetV4-S": "mobilenetv4_conv_small",
    "EfficientViT-B0": "efficientvit_b0",
}
REFERENCE = "efficientnet_lite0"
COMMON_SIZE = 224


def native_size(name):
    """The side of the input the network is built for (its data config, read from the network)."""
    from sk_decaf._torch.backbones import load_backbone

    return int(load_backbone(name, weights="random").data_config["input_size"][-1])


def worker(args):
    """Featurise the demo images with one backbone at one size in this (fresh) process."""
    import torch

    from sk_decaf import DeCAFTransformer

    os.environ["SK_DECAF_HOME"] = tempfile.mkdtemp()  # a cold ONNX export, as a new user gets
    name, size = args.worker.rsplit("@", 1)
    paths = demo_paths(limit=args.limit)
    warm_files(paths)
    start = time.perf_counter()
    decaf = DeCAFTransformer(name, weights="random", random_state=0, input_size=int(size), device="cpu")
    decaf.fit(paths)
    decaf.transform(paths[: decaf.batch_size])  # network loaded, exported and checked outside the timing
    first = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    X = decaf.transform(paths)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    network = decaf._network.get(decaf)
    write_result(
        args.result_dir,
        args.worker,
        rate=len(paths) / seconds,
        cpu_ms=1000 * cpu / len(paths),
        first=first,
        n_images=len(paths),
        n_features=int(X.shape[1]),
        engine=network.engine.name,
        params=sum(p.numel() for p in network.model.parameters()) / 1e6,
        threads=torch.get_num_threads(),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="demo images per measurement (default: all 200)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="timm names to run (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    unknown = sorted(set(args.only or []) - set(BACKBONES.values()))
    if unknown:
        raise SystemExit(f"unknown backbones {unknown}; choose from {list(BACKBONES.values())}")
    names = [n for n in BACKBONES.values() if n == REFERENCE or args.only is None or n in args.only]
    labels = {name: label for label, name in BACKBONES.items()}
    result_dir = tempfile.mkdtemp(prefix="bench_backbones_")
    passthrough = ["--limit", str(args.limit)] if args.limit else []
    load_start = os.getloadavg()[0]
    start = time.perf_counter()

    def measure(name, size, tag=""):
        print(f"running {name} at {size}{' (' + tag + ')' if tag else ''} ...", file=sys.stderr, flush=True)
        result, peak = run_worker(SCRIPT, f"{name}@{size}", passthrough, os.path.join(result_dir, tag or "."))
        print(
            f"  {result['rate']:.1f} img/s, {result['cpu_ms']:.0f} CPU ms/img, {result['engine']}, "
            f"start-up {result['first']:.1f} s, peak {peak:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
        return result

    os.makedirs(os.path.join(result_dir, "again"))
    results = {}
    for name in names:
        native = native_size(name)
        results[name] = {"native": native}
        for size in sorted({COMMON_SIZE, native}):
            results[name][size] = measure(name, size)
    again = measure(REFERENCE, COMMON_SIZE, tag="again")

    base = results[REFERENCE][COMMON_SIZE]
    rows = []
    for name in names:
        r = results[name]
        common, own = r[COMMON_SIZE], r[r["native"]]
        rows.append(
            (
                labels[name],
                name,
                str(r["native"]),
                f"{common['rate']:.1f}",
                f"{common['rate'] / base['rate']:.2f}×",
                f"{common['cpu_ms'] / base['cpu_ms']:.1f}×",
                f"{own['rate']:.1f}" if r["native"] != COMMON_SIZE else "same",
                f"{own['rate'] / base['rate']:.2f}×" if r["native"] != COMMON_SIZE else "",
                f"{own['cpu_ms'] / base['cpu_ms']:.1f}×" if r["native"] != COMMON_SIZE else "",
                f"{common['params']:.1f}",
                str(common["n_features"]),
                common["engine"],
            )
        )
    header = (
        "backbone",
        "timm name",
        "own size",
        "img/s @224",
        "× Lite0",
        "CPU × Lite0",
        "img/s @own",
        "× Lite0",
        "CPU × Lite0",
        "params (M)",
        "features",
        "engine",
    )
    print(
        f"\n{base['n_images']} demo images per measurement, random weights, pre_logits, default engine; "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), {base['threads']} torch threads; load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; each in a fresh process\n"
    )
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\nLite0 at 224: {base['rate']:.1f} img/s, {base['cpu_ms']:.0f} CPU ms/img at the start; "
        f"{again['rate']:.1f} img/s, {again['cpu_ms']:.0f} CPU ms/img at the end; total "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(f"command: python benchmarks/bench_backbones.py {' '.join(sys.argv[1:] if argv is None else argv)}")


if __name__ == "__main__":
    main()
