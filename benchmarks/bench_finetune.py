"""Fine-tuning vs frozen DeCAF features + LinearSVC on Office-Caltech-10 (Azizpour et al. Table 4).

Protocol: ``evaluate_office`` (Saenko et al. 2010, as in DeCAF Table 1), setting ``ST`` by default:
per class 20 labelled source images (amazon, caltech10) or 8 (dslr, webcam) plus 3 labelled target
images for training; every other target image is a test image. Score: mean per-class accuracy
(``balanced_accuracy_score``), mean ± std over the random splits; both methods see the same splits.

Methods, both on the pooled pre-logits features of the ImageNet-pretrained ``efficientnet_lite0``
(shipped offline):

* frozen: ``DeCAFTransformer(layer="pre_logits") -> Normalizer -> LinearSVC(C=1)`` (the baseline of
  ``bench_office_caltech.py``); features are extracted once for all splits;
* fine-tuned: ``FineTunedClassifier(layer="pre_logits")``: a new linear layer on the same features,
  the network below it trained at ``lr * backbone_lr_scale``, with timm augmentation (random-resized
  crop + flip) and a cosine schedule. To fit the CPU budget the default freezes every module up to and
  including ``blocks.5`` (``--freeze-until``), so only the last stage (``blocks.6``), ``conv_head`` and
  its BatchNorm are fine-tuned; ``--freeze-until none`` fine-tunes everything. Early stopping is off
  by default so that both methods train on exactly the same images (``--early-stopping`` holds out 10%).

``--within amazon`` adds the setting of Azizpour et al.'s Table 4, without a domain shift: ``PerClassSplit``
with ``--n-train`` labelled images per class of one domain, the rest of that domain tested.

Printed: mean ± std per shift and method, the gain in points, and the wall time of each method.
The defaults (amazon → webcam and dslr → webcam, 2 splits, 5 epochs) take about 2.5 minutes on 2 idle
CPU cores. (PyTorch's two threads spin-wait when another process holds a core: on a busy machine the
same run took three to four times longer; ``OMP_NUM_THREADS=1`` then helps.)

Run::

    python benchmarks/bench_finetune.py [--shifts amazon:webcam,dslr:webcam] [--n-splits 2]
        [--max-epochs 5] [--freeze-until blocks.5] [--head-init linear_probe] [--batchnorm frozen] [--setting ST]
        [--within amazon] [--n-train 20] [--data DIR]

``DIR`` defaults to ``$SK_DECAF_SHARED_DATA/office_caltech10``, else ``<repo>/../shared/data/office_caltech10``.
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer, FineTunedClassifier
from sk_decaf.datasets import load_office_caltech10
from sk_decaf.evaluation import evaluate, evaluate_office
from sk_decaf.model_selection import PerClassSplit


def _default_data():
    shared = os.environ.get("SK_DECAF_SHARED_DATA")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return base / "office_caltech10"


def _shifts(text):
    pairs = [tuple(item.split(":")) for item in text.split(",") if item]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError("shifts are source:target pairs, comma-separated")
    return pairs


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument(
        "--shifts",
        type=_shifts,
        default=[("amazon", "webcam"), ("dslr", "webcam")],
        help="source:target pairs, comma-separated (default amazon:webcam,dslr:webcam)",
    )
    parser.add_argument("--setting", choices=["S", "T", "ST"], default="ST")
    parser.add_argument(
        "--within",
        default="",
        help="domains also evaluated without a shift, comma-separated: "
        "--n-train labelled images per class, the rest of the domain tested",
    )
    parser.add_argument("--n-train", type=int, default=20)
    parser.add_argument("--n-splits", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--backbone-lr-scale", type=float, default=0.1)
    parser.add_argument("--freeze-until", default="blocks.5", help="a layer/module name, 'all' or 'none'")
    parser.add_argument("--head-init", choices=["linear_probe", "random"], default="linear_probe")
    parser.add_argument("--batchnorm", choices=["frozen", "recompute", "train"], default="frozen")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--early-stopping", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="DeCAF activation cache (default: a temporary file)")
    return parser.parse_args()


def _evaluate(estimator, data, source, target, args):
    start = time.perf_counter()
    if source == target:  # no shift: the per-class protocol inside one domain
        cv = PerClassSplit(args.n_train, n_splits=args.n_splits, random_state=args.seed)
        result = evaluate(estimator, (list(data.paths), data.target), protocol=cv, random_state=args.seed)
    else:
        result = evaluate_office(
            estimator,
            (list(data.paths), data.target, data.domain),
            source=source,
            target=target,
            settings=[args.setting],
            n_splits=args.n_splits,
            random_state=args.seed,
        )[args.setting]
    return result, time.perf_counter() - start


def main():
    args = _parse()
    if not args.data.is_dir():
        raise SystemExit(f"Office-Caltech-10 not found at {args.data}; pass --data.")
    freeze = None if args.freeze_until.lower() == "none" else args.freeze_until
    cache = args.cache or os.path.join(tempfile.mkdtemp(prefix="bench_finetune_"), "activations.sqlite")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}, "
        f"CUDA: {torch.cuda.is_available()}"
    )
    print(
        f"setting {args.setting}, {args.n_splits} splits, seed {args.seed}; fine-tuning: {args.max_epochs} "
        f"epochs, lr {args.lr:g} (backbone x{args.backbone_lr_scale:g}), freeze_until={freeze!r}, "
        f"head_init={args.head_init!r}, batchnorm={args.batchnorm!r}, "
        f"batch {args.batch_size}, early stopping {'on' if args.early_stopping else 'off'}\n"
    )

    frozen = make_pipeline(
        DeCAFTransformer(layer="pre_logits", cache=cache, device=args.device), Normalizer(), LinearSVC(C=1.0)
    )
    finetuned = FineTunedClassifier(
        layer="pre_logits",
        max_epochs=args.max_epochs,
        lr=args.lr,
        backbone_lr_scale=args.backbone_lr_scale,
        freeze_until=freeze,
        head_init=args.head_init,
        batchnorm=args.batchnorm,
        batch_size=args.batch_size,
        early_stopping=args.early_stopping,
        device=args.device,
        random_state=args.seed,
    )
    rows = []
    within = [(d, d) for d in args.within.split(",") if d]
    for source, target in args.shifts + within:
        data = load_office_caltech10(args.data, domain=sorted({source, target}))
        base, t_base = _evaluate(frozen, data, source, target, args)
        tuned, t_tuned = _evaluate(finetuned, data, source, target, args)
        print(f"{source} -> {target}: {base.protocol}", flush=True)
        print(
            f"  frozen + LinearSVC : {100 * base.mean:6.2f} ± {100 * base.std:4.2f}  "
            f"splits {np.round(100 * base.scores, 2).tolist()}  ({t_base:.0f} s)"
        )
        print(
            f"  fine-tuned         : {100 * tuned.mean:6.2f} ± {100 * tuned.std:4.2f}  "
            f"splits {np.round(100 * tuned.scores, 2).tolist()}  ({t_tuned:.0f} s)",
            flush=True,
        )
        rows.append(
            (f"{source} → {target}" if source != target else f"{source} (no shift)", base, tuned, t_base, t_tuned)
        )

    print("\n| shift | frozen + LinearSVC | fine-tuned | gain (points) | time frozen | time fine-tuned |")
    print("|---|---|---|---|---|---|")
    for name, base, tuned, t_base, t_tuned in rows:
        print(
            f"| {name} | {100 * base.mean:.2f} ± {100 * base.std:.2f} | {100 * tuned.mean:.2f} ± "
            f"{100 * tuned.std:.2f} | {100 * (tuned.mean - base.mean):+.2f} | {t_base:.0f} s | "
            f"{t_tuned:.0f} s ({t_tuned / t_base:.0f}x) |"
        )


if __name__ == "__main__":
    main()
