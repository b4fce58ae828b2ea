"""Extraction speed: DeCAFTransformer against hand-written timm loops, in one run, as ratios.

Compared on the same images, network, weights and batch size:

* ``DeCAFTransformer`` with each engine (onnxruntime on the CPU, torch);
* a plain timm loop: ``timm.data.create_transform`` + a torch ``DataLoader`` + ``model(x)`` under
  ``torch.inference_mode`` — what a user writes by hand;
* a one-image-at-a-time loop (open, transform, forward), as img2vec-style tools do.

Each method runs in a fresh process (so peak RSS is its own) after a warm-up batch; the first-call cost
(model load, ONNX export and check) is reported separately. Images/s are printed for information only;
the comparison is the ratio to the plain timm loop, measured in this run.

Usage: ``python benchmarks/bench_extract.py [--repeat 3] [--batch-size 32] [--backbone efficientnet_lite0]``
"""

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time


def _images(repeat):
    from sk_decaf.datasets import load_demo

    return load_demo().paths * repeat


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_decaf(args, engine, queue):
    os.environ["SK_DECAF_HOME"] = tempfile.mkdtemp()  # a cold ONNX export, as a new user gets
    from sk_decaf import DeCAFTransformer

    paths = _images(args.repeat)
    start = time.perf_counter()
    est = DeCAFTransformer(backbone=args.backbone, engine=engine, batch_size=args.batch_size).fit(paths)
    est.transform(paths[: args.batch_size])  # warm-up: loads the network, exports and checks ONNX
    first = time.perf_counter() - start
    start = time.perf_counter()
    X = est.transform(paths)
    seconds = time.perf_counter() - start
    queue.put((f"DeCAFTransformer(engine={engine!r})", len(paths) / seconds, first, _peak_rss_mb(), X.shape))


def _timm_model(backbone):
    """The same network and weights as DeCAFTransformer, built by hand with timm."""
    import timm
    import torch

    from sk_decaf._torch.backbones import OFFLINE_WEIGHTS, _offline_file

    arch, package = OFFLINE_WEIGHTS.get(backbone, (backbone, None))
    model = timm.create_model(arch, pretrained=package is None)
    if package is not None:
        state = torch.load(_offline_file(package), map_location="cpu", weights_only=True)
        model.load_state_dict(dict(zip(model.state_dict(), state.values())))
    return model.eval()


class _Files:
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB"))


def run_plain_loop(args, queue):
    import timm.data
    import torch
    from torch.utils.data import DataLoader

    paths = _images(args.repeat)
    start = time.perf_counter()
    model = _timm_model(args.backbone)
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    loader = DataLoader(_Files(paths, transform), batch_size=args.batch_size, num_workers=args.workers)
    with torch.inference_mode():
        model(next(iter(loader)))  # warm-up batch
    first = time.perf_counter() - start
    start = time.perf_counter()
    outs = []
    with torch.inference_mode():
        for batch in loader:
            outs.append(model.forward_head(model.forward_features(batch), pre_logits=True))
    seconds = time.perf_counter() - start
    shape = tuple(torch.cat(outs).shape)
    queue.put((f"plain timm loop (DataLoader, {args.workers} workers)", len(paths) / seconds, first,
               _peak_rss_mb(), shape))


def run_one_at_a_time(args, queue):
    import timm.data
    import torch
    from PIL import Image

    paths = _images(args.repeat)
    start = time.perf_counter()
    model = _timm_model(args.backbone)
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    first = time.perf_counter() - start
    start = time.perf_counter()
    outs = []
    with torch.inference_mode():
        for path in paths:
            with Image.open(path) as img:
                x = transform(img.convert("RGB")).unsqueeze(0)
            outs.append(model.forward_head(model.forward_features(x), pre_logits=True))
    seconds = time.perf_counter() - start
    queue.put(("one image at a time", len(paths) / seconds, first, _peak_rss_mb(), tuple(torch.cat(outs).shape)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="passes over the 200 demo images (default: 3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain loop")
    parser.add_argument("--engines", nargs="+", default=["onnxruntime", "torch"])
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    jobs = [(run_plain_loop, (args,)), (run_one_at_a_time, (args,))]
    jobs += [(run_decaf, (args, engine)) for engine in args.engines]
    results = []
    for target, extra in jobs:
        queue = ctx.Queue()
        proc = ctx.Process(target=target, args=(*extra, queue))
        proc.start()
        results.append(queue.get())
        proc.join()

    n = 200 * args.repeat
    print(f"{n} images (the demo set x {args.repeat}), backbone {args.backbone}, batch size {args.batch_size}, "
          f"{os.cpu_count()} CPU cores\n")
    baseline = results[0][1]
    print(f"{'method':<44} {'img/s':>7} {'x plain loop':>13} {'first call s':>13} {'peak RSS MB':>12}")
    for name, rate, first, rss, shape in results:
        print(f"{name:<44} {rate:>7.1f} {rate / baseline:>12.2f}x {first:>13.2f} {rss:>12.0f}")
    assert len({r[4] for r in results}) == 1, "every method must produce the same feature shape"


if __name__ == "__main__":
    main()
