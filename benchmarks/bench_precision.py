"""Precision on the CPU: float32, bfloat16 and int8 in one run, speed and accuracy, as ratios to float32.

Three precisions of ``DeCAFTransformer`` on the CPU: ``precision="float32"`` (the default: onnxruntime),
``"bfloat16"`` (torch with oneDNN, bf16 autocast) and ``"int8"`` (the onnxruntime graph quantized to int8,
calibrated on the demo images). Each is built and warmed up outside the timings (export, quantization,
first batch).

* **Speed** (``--backbones``; default EfficientNet-Lite0 and -Lite2 with their ImageNet weights, ResNet-50
  with random weights):

  - *model only*: the started engine on one batch of 32 prepared uint8 inputs, the precisions alternating
    (``--model-reps`` rounds); the median img/s of each, and the median of the per-round ratios to float32,
    which a shared machine's load affects far less than the rates;
  - *end to end*: ``transform`` over the demo images (``--repeat`` times), paths in, float32 features out,
    decoding included, no cache, the precisions alternating (``--rounds`` rounds); medians as above.

  Random weights give meaningless features, so the int8 agreement check is switched off for the random-weight
  rows (their int8 graph always runs): they measure speed only.
* **Accuracy** (``--accuracy``, EfficientNet-Lite0 and -Lite2): features of every precision through an
  activation cache (``--cache``), then ``SignedSqrt`` and ``LinearSVC(C=1)`` on the protocols of
  ``bench_recipes.py`` (the same functions): Office-Caltech-10 within domain (4 domains, 5 splits),
  amazon → webcam ST and Daumé III, caltech10 3-shot, the demo set. Differences to float32 in points, and the
  cosine between each precision's and float32's features on every Office image.
* ``--methods``: the int8 quantization methods tried, on EfficientNet-Lite0's pre-logits: agreement with
  float32 on the 100 held-out demo images (lowest and mean cosine) and the model-only int8 / float32 speed
  ratio, interleaved as above.
* ``--slices``: the torch engine's bfloat16 slice size (images per forward pass), model only.
* ``--bf16``: the bfloat16 paths, EfficientNet-Lite0 model only, interleaved: torch with oneDNN (channels_last or
  not, two slice sizes) against onnxruntime float32, and whether onnxruntime runs a bfloat16 convolution at all.

Run: ``python benchmarks/bench_precision.py [--accuracy --cache /tmp/precision.sqlite] [--methods] [--slices]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from bench_recipes import DOMAINS, amazon_webcam, demo_score, few_shot, within_domain
from threadpoolctl import threadpool_limits

from sk_decaf import DeCAFTransformer, SignedSqrt
from sk_decaf._torch import quantize
from sk_decaf._torch.engines import OnnxEngine, export_onnx, native_bf16
from sk_decaf.datasets import load_demo, load_office_caltech10

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "bfloat16", "int8")
BACKBONES = {
    "Lite0": ("efficientnet_lite0", None),
    "Lite2": ("efficientnet_lite2", None),
    "ResNet-50": ("resnet50", "random"),
}
ACCURACY_BACKBONES = ("Lite0", "Lite2")

#: The quantization methods tried (``--methods``), in the order they were tried; the one ``precision="int8"`` uses
#: (quantize.METHOD) is marked in the table.
M = quantize.Method
METHODS = {
    "the first attempt (the issue's)": M(format="qdq", calibration="minmax", fold_shapes=False, float_layers=0),
    "+ quant_pre_process": M(format="qdq", calibration="minmax", fold_shapes=False, float_layers=0, preprocess=True),
    "shapes folded": M(format="qdq", calibration="minmax", float_layers=0),
    "shapes folded, per-tensor": M(format="qdq", calibration="minmax", float_layers=0, per_channel=False),
    "shapes folded, QOperator": M(format="qoperator", calibration="minmax", float_layers=0),
    "shapes folded, int8 activations": M(format="qdq", calibration="minmax", float_layers=0, activations="int8"),
    "shapes folded, Entropy": M(format="qdq", calibration="entropy", float_layers=0),
    "shapes folded, Percentile, symmetric": M(format="qdq", float_layers=0, symmetric_ranges=True),
    "shapes folded, Percentile": M(format="qdq", float_layers=0),
    "shapes folded, stem float32": M(format="qdq", calibration="minmax", float_layers=1),
    "shapes folded, stem + block 0 float32": M(format="qdq", calibration="minmax", float_layers=3),
    "shapes folded, head float32": M(format="qdq", calibration="minmax", float_layers=0, float_last=1),
    "Percentile 99.99, stem + block 0 float32": M(format="qdq", percentile=99.99, float_layers=3),
    "Percentile, stem + block 0 float32": M(format="qdq", float_layers=3),
    "Percentile, stem + block 0 and head float32": M(format="qdq", float_layers=3, float_last=1),
    "Percentile, stem + block 0 float32, QOperator": M(format="qoperator", float_layers=3),
    "Percentile, QOperator": M(format="qoperator", float_layers=0),
}


def _transformer(backbone, weights, precision, **params):
    return DeCAFTransformer(backbone, weights=weights, precision=precision, device="cpu", random_state=0, **params)


def started(backbone, weights, precision, paths):
    """A fitted transformer whose engine is started (graph exported and quantized), and its featurizer."""
    decaf = _transformer(backbone, weights, precision).fit(paths[:2])
    decaf.transform(paths[:32])
    return decaf, decaf._network.get(decaf)


def interleaved(contenders, reps):
    """``{name: seconds per round}``: every contender once per round, in turn, ``reps`` rounds."""
    times = {name: [] for name in contenders}
    for _ in range(reps):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: np.asarray(t) for name, t in times.items()}


def summarise(times, n_images, base="float32"):
    """``{name: (median img/s, median ratio of the paired rounds to base)}``."""
    return {name: (n_images / np.median(t), float(np.median(times[base] / t))) for name, t in times.items()}


def speed(args, paths):
    rows = []
    for label in args.backbones:
        backbone, weights = BACKBONES[label]
        saved = quantize.AGREEMENT
        if weights == "random":
            quantize.AGREEMENT = -1.0  # meaningless features: measure the int8 graph's speed whatever they are
        try:
            runs = {p: started(backbone, weights, p, paths) for p in PRECISIONS}
        finally:
            quantize.AGREEMENT = saved
        for p, (_, featurizer) in runs.items():
            if featurizer.computed_precision != p:
                print(f"  {label}: precision={p!r} computes {featurizer.computed_precision}", flush=True)
        x = torch.from_numpy(runs["float32"][1].prepare(paths[:32]))
        model = {p: (lambda f=f, x=x: f.engine(x)) for p, (_, f) in runs.items()}
        with torch.inference_mode():
            model_times = summarise(interleaved(model, args.model_reps), len(x))
        end_to_end = {p: (lambda d=d: d.transform(paths)) for p, (d, _) in runs.items()}
        e2e_times = summarise(interleaved(end_to_end, args.rounds), len(paths))
        for p in PRECISIONS:
            rows.append((label, p, runs[p][1].computed_precision, model_times[p], e2e_times[p]))
        print(f"  {label}: done (load average {os.getloadavg()[0]:.1f})", flush=True)
    lines = [
        "| backbone | precision | model only img/s | × float32 | end to end img/s | × float32 |",
        "|---|---|---|---|---|---|",
    ]
    for label, p, computed, (m_rate, m_ratio), (e_rate, e_ratio) in rows:
        name = p if computed == p else f"{p} (ran {computed})"
        lines.append(f"| {label} | {name} | {m_rate:.1f} | {m_ratio:.2f}× | {e_rate:.1f} | {e_ratio:.2f}× |")
    return lines


def accuracy(args):
    office = load_office_caltech10(args.data)
    paths, target = list(office.paths), office.target
    domain = np.asarray(office.domain, str)
    y = {d: target[domain == d] for d in DOMAINS}
    demo = load_demo()
    results, cos_rows = {}, []
    for label in ACCURACY_BACKBONES:
        backbone, _ = BACKBONES[label]
        raw = {}
        for p in PRECISIONS:
            start = time.perf_counter()
            decaf = _transformer(backbone, None, p, cache=args.cache).fit(paths)
            raw[p] = decaf.transform(paths)
            demo_raw = _transformer(backbone, None, p, cache=args.cache).fit(demo.paths).transform(demo.paths)
            F, demo_X = SignedSqrt().fit_transform(raw[p]), SignedSqrt().fit_transform(demo_raw)
            X = {d: F[domain == d] for d in DOMAINS}
            with threadpool_limits(args.blas_threads, user_api="blas"):
                within = within_domain(X, y)
                results[label, p] = dict(
                    per_split=np.mean(list(within.values()), axis=0),
                    within={d: s.mean() for d, s in within.items()},
                    aw=amazon_webcam(X, y)[1:],
                    shot=few_shot(X["caltech10"], y["caltech10"]),
                    demo=demo_score(demo_X, demo.target),
                )
            print(f"  {label} {p}: {time.perf_counter() - start:.0f} s", flush=True)
        for p in PRECISIONS[1:]:
            cos = quantize.cosines([raw[p]], [raw["float32"]])
            cos_rows.append(f"| {label} | {p} | {cos.min():.4f} | {cos.mean():.4f} |")
    head = ["backbone", "precision", *DOMAINS.values(), "within mean", "A→W ST", "A→W Daumé", "C 3-shot", "demo"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for (label, p), r in results.items():
        base = results[label, "float32"]
        values = [*r["within"].values(), r["per_split"].mean(), *r["aw"], r["shot"], r["demo"]]
        bases = [*base["within"].values(), base["per_split"].mean(), *base["aw"], base["shot"], base["demo"]]
        if p == "float32":
            cells = [f"{100 * v:.1f}" for v in values]
        else:
            cells = [f"{100 * v:.1f} ({100 * (v - b):+.1f})" for v, b in zip(values, bases)]
        lines.append(f"| {label} | {p} | " + " | ".join(cells) + " |")
    lines += ["", "within-domain mean minus float32's, paired by split (mean ± std over the 5 splits):"]
    for (label, p), r in results.items():
        if p != "float32":
            diff = 100 * (r["per_split"] - results[label, "float32"]["per_split"])
            lines.append(f"  {label} {p}: {diff.mean():+.2f} ± {diff.std():.2f}")
    lines += ["", "| backbone | precision | lowest cosine to float32 | mean cosine |", "|---|---|---|---|", *cos_rows]
    return lines


def methods(args, paths):
    """Each method's agreement on the held-out demo images; then every int8 graph and the float32 graph (as
    exported, and with its shapes folded) timed in the same rounds, so that their ratios share the load."""
    _, featurizer = started("efficientnet_lite0", None, "float32", paths)
    folded = featurizer.onnx_path()  # the float32 engine's graph: its shapes are folded
    calibrate, check = quantize.calibration_split(paths)
    calibration, held_out = featurizer.prepare(calibrate), featurizer.prepare(check)
    x = held_out[:32]
    folder = os.path.join(os.path.dirname(folded), "methods")
    os.makedirs(folder, exist_ok=True)
    # The methods start from the graph as torch exports it, so that "shapes folded" is one of their choices.
    example = torch.from_numpy(np.ascontiguousarray(calibration[:2]))
    float_path = export_onnx(featurizer.extractor, os.path.join(folder, "float32.onnx"), example)
    engines = {"float32": OnnxEngine(float_path), "float32, shapes folded": OnnxEngine(folded)}
    rows = {"float32, shapes folded": ("1.0000", "1.0000", "–")}
    for k, (name, method) in enumerate(METHODS.items()):
        out = os.path.join(folder, f"method-{k}.onnx")
        start = time.perf_counter()
        quantize.quantize(float_path, out, calibration, method)
        built = time.perf_counter() - start
        agree = quantize.agreement(out, float_path, held_out)
        engines[name] = OnnxEngine(out)
        rows[name] = (f"{agree['min']:.4f}", f"{agree['mean']:.4f}", f"{built:.0f}")
        print(f"  {name}: {method.describe()}: {rows[name]}", flush=True)
    times = interleaved({name: (lambda e=e: e(x)) for name, e in engines.items()}, args.model_reps)
    ratios = summarise(times, len(x))
    lines = [
        "| method | lowest cosine | mean cosine | model only × float32 | build s |",
        "|---|---|---|---|---|",
    ]
    for name, (low, mean, built) in rows.items():
        described = f"{name}: {METHODS[name].describe()}" if name in METHODS else name
        if METHODS.get(name) == quantize.METHOD:
            described = f"**{described} (chosen)**"
        lines.append(f"| {described} | {low} | {mean} | {ratios[name][1]:.2f}× | {built} |")
    lines.append(f"(float32: {ratios['float32'][0]:.1f} img/s, model only, batches of {len(x)})")
    return lines


def slices(args, paths):
    _, featurizer = started("efficientnet_lite0", None, "bfloat16", paths)
    engine = featurizer.engine
    x = torch.from_numpy(featurizer.prepare(paths[:64]))
    contenders = {}
    for size in (4, 8, 16, 32, 64):
        contenders[f"slices of {size}"] = lambda size=size: _sliced(engine, x, size)
    with torch.inference_mode():
        times = interleaved(contenders, args.model_reps)
    rates = summarise(times, len(x), base="slices of 4")
    lines = ["| bfloat16, torch | img/s | × slices of 4 |", "|---|---|---|"]
    lines += [f"| {name} | {rate:.1f} | {ratio:.2f}× |" for name, (rate, ratio) in rates.items()]
    return lines


def _onnxruntime_bf16():
    """Whether onnxruntime's CPU provider runs a bfloat16 convolution: None if it does, else its error."""
    import onnx
    from onnx import TensorProto, helper

    from sk_decaf._torch.engines import _onnxruntime

    node = helper.make_node("Conv", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "bf16",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, None)],
        [helper.make_tensor("w", TensorProto.BFLOAT16, [4, 3, 3, 3], [0.0] * 108)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ort = _onnxruntime()
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's NOT_IMPLEMENTED: no kernel for the type
        return str(exc).splitlines()[0][:160]
    del onnx
    return None


def bf16_paths(args, paths):
    """Lite0 model only: torch bfloat16 (channels_last or not, two slice sizes) against onnxruntime float32 (its
    only CPU path for a convolutional network: it has no bfloat16 convolution there) and torch float32, interleaved."""
    import copy

    from sk_decaf._torch.engines import TorchEngine

    _, f32 = started("efficientnet_lite0", None, "float32", paths)
    _, bf16 = started("efficientnet_lite0", None, "bfloat16", paths)
    x = torch.from_numpy(f32.prepare(paths[:64]))
    contiguous = TorchEngine(copy.deepcopy(bf16.extractor), bf16.device, bf16=True)
    contiguous.extractor.channels_last = False
    contiguous.extractor.to(memory_format=torch.contiguous_format)
    chosen = bf16.engine.cpu_slice
    contenders = {
        "onnxruntime float32 (the default)": lambda: f32.engine(x),
        "torch float32, channels_last, slices of 4": lambda: f32.torch_engine(x),
        f"torch bfloat16, channels_last, slices of {chosen} (chosen)": lambda: bf16.engine(x),
        "torch bfloat16, channels_last, slices of 4": lambda: _sliced(bf16.engine, x, 4),
        "torch bfloat16, channels_last, slices of 32": lambda: _sliced(bf16.engine, x, 32),
        f"torch bfloat16, contiguous, slices of {chosen}": lambda: _sliced(contiguous, x, chosen),
    }
    with torch.inference_mode():
        rates = summarise(interleaved(contenders, args.model_reps), len(x), base="onnxruntime float32 (the default)")
    reason = _onnxruntime_bf16()
    lines = [
        f"Lite0, model only, {len(x)} images per round; onnxruntime bfloat16 convolution: "
        + ("runs" if reason is None else f"none ({reason})"),
        "| path | img/s | × onnxruntime float32 |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {rate:.1f} | {ratio:.2f}× |" for name, (rate, ratio) in rates.items()]
    return lines


def _sliced(engine, x, size):
    saved, engine.cpu_slice = engine.cpu_slice, size
    try:
        return engine(x)
    finally:
        engine.cpu_slice = saved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), default=list(BACKBONES))
    parser.add_argument("--repeat", type=int, default=1, help="passes over the 200 demo images per timed round")
    parser.add_argument("--limit", type=int, default=None, help="only the first LIMIT demo images (quick checks)")
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end rounds (default 3)")
    parser.add_argument("--model-reps", type=int, default=15, help="model-only rounds (default 15)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed table")
    parser.add_argument("--accuracy", action="store_true", help="also measure accuracy (Office-Caltech-10, demo)")
    parser.add_argument("--methods", action="store_true", help="only: the int8 quantization methods tried")
    parser.add_argument("--slices", action="store_true", help="only: the torch engine's bfloat16 slice sizes")
    parser.add_argument("--bf16", action="store_true", help="only: the bfloat16 paths (torch, onnxruntime), Lite0")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "office_caltech10"))
    parser.add_argument("--cache", default=None, help="activation cache file for --accuracy (default: none)")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads of the SVMs (default 1)")
    args = parser.parse_args(argv)
    warnings.simplefilter("default")
    paths = list(load_demo().paths) * args.repeat
    paths = paths[: args.limit] if args.limit else paths
    print(
        f"{os.cpu_count()} CPU cores ({platform.machine()}, native bfloat16: {native_bf16()}), torch "
        f"{torch.__version__}; load average {os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    sections = []
    if args.methods:
        sections.append(methods(args, paths))
    elif args.slices:
        sections.append(slices(args, paths))
    elif args.bf16:
        sections.append(bf16_paths(args, paths))
    else:
        if not args.no_speed:
            sections.append(speed(args, paths))
        if args.accuracy:
            if not Path(args.data).is_dir():
                sys.exit(f"Office-Caltech-10 not found at {args.data} (expected <root>/<domain>/<class>/*.jpg).")
            sections.append(accuracy(args))
    for lines in sections:
        print("\n" + "\n".join(lines))
    print(f"\ncommand: python benchmarks/bench_precision.py {shlex.join(sys.argv[1:] if argv is None else argv)}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[1]:.1f} (5 min)")


if __name__ == "__main__":
    main()
