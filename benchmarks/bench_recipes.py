"""Recipes compared: single backbones, test-time augmentation and ensembles, accuracy against images per second.

Each row is a feature recipe followed by ``LinearSVC(C=1)``: ``make_ensemble(*backbones, tta=...)``, i.e. per
backbone ``DeCAFTransformer(backbone, tta=...)`` (pooled pre-logits) then ``SignedSqrt()``, the branches
concatenated. Every row is scored on the same splits of:

* **Office-Caltech-10, within domain** (columns A, C, D, W): per domain, ``PerClassSplit`` with 20 training images
  per class (amazon, caltech10) or 8 (dslr, webcam; ``too_few="shrink"`` for dslr's 8 mugs), the rest tested,
  5 splits, seed 0; "mean" is the mean of the four domains;
* **Office-Caltech-10, amazon → webcam** (Saenko et al. 2010): ``DomainAdaptationSplit`` (20 amazon + 3 webcam
  images per class, the other webcam images tested, 5 splits, seed 0), trained on the amazon images only (S), on
  both (ST), or on both with Daumé III's ``DomainAugment`` before the SVM;
* **caltech10 with 3 training images per class** (column "C 3-shot"): ``PerClassSplit(n_train=3)``, 10 splits, seed 0,
  the other caltech10 images tested. Lite0 scores about 90 here, where the other columns sit near their ceiling,
  so recipes differ by more than the noise: the closest of these to a harder benchmark;
* **the demo set** (200 Caltech-101 images, 10 classes): ``PerClassSplit`` 10 train / 10 test per class, 10 splits.

Scores are mean per-class accuracy (%), mean over the splits; the within-domain means are also compared with
Lite0's split by split (every row has the same splits), which shows the noise.

**Resolution.** The rows ``"Lite0 @ 256"`` ... test each EfficientNet-Lite at about 1.15x and 1.3x the side of
its own input (Lite0 224 -> 256, 288; Lite1 240 -> 276, 312; Lite2 260 -> 300, 340), through
``DeCAFTransformer(input_size=...)``: the same weights, the resize and centre crop at the same ``crop_pct``
(Touvron et al. 2019, "Fixing the train-test resolution discrepancy": CNNs tested above their training size
often gain). Each is compared split by split with its backbone at its own size. The best of them, Lite2 at 300,
is also run with the flip and in the Lite0 + Lite2 ensemble (``"Lite0 + Lite2 @ 300, flip"``: the branch's
``efficientnet_lite2__decaf__input_size=300``). Office features go through an
activation cache (``--cache``), so a second run, or a row that reuses a backbone and setting, computes nothing;
rows with many views can be restricted to some domains (``--heavy-domains``; their other cells show "–").

**Cost.** The demo images are featurised without a cache for every (backbone, tta) setting, after one warm-up
batch, and timed in wall-clock and in CPU time (this process, all threads; decoding runs in it on a CPU with fewer
than 8 cores). A row combines its members: img/s ``1 / sum(1 / rate)``, CPU ms/img summed. "cost" is the row's CPU
time per image over Lite0's: on a shared, loaded machine, wall-clock rates follow the other processes' load, CPU
time much less. Lite0 is timed again at the end, to show the drift.

Run: ``python benchmarks/bench_recipes.py --cache /tmp/recipes.sqlite [--rows ROW ...] [--heavy-domains dslr webcam]``;
the resolution rows (docs/recipes.md, "Input resolution"): ``--rows Lite0 Lite1 Lite2 "Lite0 + Lite2"
"Lite0 + Lite2, flip" "Lite0 @ 256" "Lite0 @ 288" "Lite1 @ 276" "Lite1 @ 312" "Lite2 @ 300" "Lite2 @ 340"
"Lite2 @ 300 + flip" "Lite0 + Lite2 @ 300" "Lite0 + Lite2 @ 300, flip"``.
"""

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from sk_decaf import DomainAugment, make_ensemble
from sk_decaf.datasets import load_demo, load_office_caltech10
from sk_decaf.evaluation import evaluate, evaluate_office
from sk_decaf.model_selection import DomainAdaptationSplit

REPO = Path(__file__).resolve().parents[1]
DOMAINS = {"amazon": "A", "caltech10": "C", "dslr": "D", "webcam": "W"}
N_TRAIN = {"amazon": 20, "caltech10": 20, "dslr": 8, "webcam": 8}
LITE = {"Lite0": "efficientnet_lite0", "Lite1": "efficientnet_lite1", "Lite2": "efficientnet_lite2"}
HEAVY = {"10crop", "12jitter"}
#: Views per image of each tta mode (DeCAFTransformer's batch_size counts views, so batches stay 32 crops).
VIEWS = {None: 1, "flip": 2, "10crop": 10, "12jitter": 12}

#: Row name -> (members, tta), all run by default. A member is a backbone at its own input size ("Lite2") or at
#: another ("Lite2 @ 300": ``DeCAFTransformer(input_size=300)``). With an empty cache, on 2 shared CPU cores,
#: expect about an hour and a half with ``--heavy-domains dslr webcam`` (10crop and 12jitter cost 6-7 plain
#: passes each).
ROWS = {
    "Lite0": (["Lite0"], None),
    "Lite0 + flip": (["Lite0"], "flip"),
    "Lite0 + 10crop": (["Lite0"], "10crop"),
    "Lite0 + 12jitter": (["Lite0"], "12jitter"),
    "Lite1": (["Lite1"], None),
    "Lite2": (["Lite2"], None),
    "Lite2 + flip": (["Lite2"], "flip"),
    "Lite0 + Lite2": (["Lite0", "Lite2"], None),
    "Lite0 + Lite2, flip": (["Lite0", "Lite2"], "flip"),
    "Lite0 + Lite1 + Lite2": (["Lite0", "Lite1", "Lite2"], None),
    "Lite0 + Lite1 + Lite2, flip": (["Lite0", "Lite1", "Lite2"], "flip"),
    # Resolution: about 1.15x and 1.3x the side of each network's own input (Lite0 224, Lite1 240, Lite2 260).
    "Lite0 @ 256": (["Lite0 @ 256"], None),
    "Lite0 @ 288": (["Lite0 @ 288"], None),
    "Lite1 @ 276": (["Lite1 @ 276"], None),
    "Lite1 @ 312": (["Lite1 @ 312"], None),
    "Lite2 @ 300": (["Lite2 @ 300"], None),
    "Lite2 @ 340": (["Lite2 @ 340"], None),
    # The best of those, alone with the flip and in the recommended ensemble.
    "Lite2 @ 300 + flip": (["Lite2 @ 300"], "flip"),
    "Lite0 + Lite2 @ 300": (["Lite0", "Lite2 @ 300"], None),
    "Lite0 + Lite2 @ 300, flip": (["Lite0", "Lite2 @ 300"], "flip"),
}
#: The resolution rows: compared split by split with their backbone at its own size.
RESOLUTION = {row: row.split(" @ ")[0] for row in ROWS if "@" in row and len(ROWS[row][0]) == 1 and not ROWS[row][1]}


def member(name):
    """``"Lite2 @ 300"`` -> ``("efficientnet_lite2", 300)``; ``"Lite2"`` -> ``("efficientnet_lite2", None)``."""
    lite, _, size = name.partition(" @ ")
    return LITE[lite], int(size) if size else None


def recipe(row, cache):
    """The row's feature extractor: what a user writes, ``make_ensemble(*backbones, tta=...)`` with, for a member at
    another input size, ``input_size`` set on its branch."""
    members, tta = ROWS[row]
    union = make_ensemble(*(member(m)[0] for m in members), tta=tta, cache=cache)
    for name in members:
        backbone, size = member(name)
        if size:
            union.set_params(**{f"{backbone}__decaf__input_size": size})
    return union


def classifier():
    return LinearSVC(C=1.0)


def time_members(rows, demo_paths):
    """{(member, tta): (img/s, CPU s/img, demo features)}: each setting featurises the demo images once, without a
    cache. CPU time (this process's, all its threads) is far less sensitive than wall time to other processes'
    load on a shared machine: the cost ratios are computed from it."""
    out = {}
    for members, tta in (ROWS[row] for row in rows):
        for m in members:
            if (m, tta) in out:
                continue
            backbone, size = member(m)
            decaf = make_ensemble(backbone, tta=tta, decaf_params={"input_size": size}).fit(demo_paths)
            decaf.transform(demo_paths[:4])  # network loaded, exported and checked outside the timing
            start, cpu = time.perf_counter(), time.process_time()
            features = decaf.transform(demo_paths)
            n = len(demo_paths)
            out[m, tta] = (n / (time.perf_counter() - start), (time.process_time() - cpu) / n, features)
            print(
                f"  timed {m}{' + ' + tta if tta else ''}: {out[m, tta][0]:.1f} img/s, "
                f"{1000 * out[m, tta][1]:.0f} CPU ms/img",
                flush=True,
            )
    return out


def within_domain(X, y):
    """{domain: mean per-class accuracy of each split}: PerClassSplit per domain on the row's features."""
    return {
        d: evaluate(
            classifier(),
            (X[d], y[d]),
            protocol="per-class",
            n_train=N_TRAIN[d],
            n_splits=5,
            too_few="shrink",
            random_state=0,
        ).scores
        for d in X
    }


def few_shot(X, y, n_train=3, n_splits=10):
    """Mean per-class accuracy on caltech10 with ``n_train`` training images per class, the rest tested."""
    return evaluate(classifier(), (X, y), protocol="per-class", n_train=n_train, n_splits=n_splits, random_state=0).mean


def amazon_webcam(X, y):
    """(S, ST, Daumé III) mean per-class accuracy on amazon → webcam, the same splits for all three."""
    Xa, ya = (np.concatenate([v["amazon"], v["webcam"]]) for v in (X, y))
    da = np.repeat(["amazon", "webcam"], [len(y["amazon"]), len(y["webcam"])])
    office = evaluate_office(
        classifier(), (Xa, ya, da), source="amazon", target="webcam", settings=("S", "ST"), random_state=0
    )
    cv = DomainAdaptationSplit("amazon", "webcam", setting="ST", n_splits=5, random_state=0)
    daume = []
    for train, test in cv.split(Xa, ya, sample_domain=da):
        augment = DomainAugment(target_domain="webcam").fit(Xa[train], sample_domain=da[train])
        clf = classifier().fit(augment.transform(Xa[train], sample_domain=da[train]), ya[train])
        y_pred = clf.predict(augment.transform(Xa[test], sample_domain=da[test]))
        daume.append(balanced_accuracy_score(ya[test], y_pred))
    return office["S"].mean, office["ST"].mean, float(np.mean(daume))


def demo_score(X, y):
    return evaluate(classifier(), (X, y), protocol="per-class", n_train=10, n_splits=10, random_state=0).mean


def cell(value):
    return "–" if value is None else f"{100 * value:.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "office_caltech10"))
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=list(ROWS),
        default=list(ROWS),
        metavar="ROW",
        help=f"rows to run, among {list(ROWS)} (default: all)",
    )
    parser.add_argument(
        "--heavy-domains",
        nargs="+",
        choices=list(DOMAINS),
        default=list(DOMAINS),
        help="Office domains featurised for the 10crop/12jitter rows (default: all four)",
    )
    parser.add_argument("--cache", default=None, help="activation cache file (default: none)")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads of the SVMs (default 1)")
    args = parser.parse_args(argv)
    if not Path(args.data).is_dir():
        sys.exit(f"Office-Caltech-10 not found at {args.data} (expected <root>/<domain>/<class>/*.jpg).")

    office = load_office_caltech10(args.data)
    paths, target, domain = np.asarray(office.paths, dtype=object), office.target, np.asarray(office.domain, str)
    y = {d: target[domain == d] for d in DOMAINS}
    demo = load_demo()
    demo_paths = list(demo.paths)
    print(
        f"{len(paths)} Office-Caltech-10 images, {len(demo_paths)} demo images; {os.cpu_count()} CPU cores "
        f"({platform.machine()}), load average {os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )

    start = time.perf_counter()
    print("cost: demo images, no cache", flush=True)
    members = time_members(args.rows, demo_paths)
    results = {}
    for row in args.rows:
        t_row = time.perf_counter()
        backbones, tta = ROWS[row]
        domains = args.heavy_domains if tta in HEAVY else list(DOMAINS)
        keep = np.isin(domain, domains)
        F = recipe(row, args.cache).fit_transform(list(paths[keep]))
        X = {d: F[domain[keep] == d] for d in domains}
        with threadpool_limits(args.blas_threads, user_api="blas"):
            within = within_domain(X, {d: y[d] for d in domains})
            aw = amazon_webcam(X, y) if {"amazon", "webcam"} <= set(domains) else (None, None, None)
            shot = few_shot(X["caltech10"], y["caltech10"]) if "caltech10" in domains else None
            # The demo features are the timed ones (each through its SignedSqrt), concatenated as in the recipe.
            demo_X = np.hstack([members[b, tta][2] for b in backbones])
            demo_acc = demo_score(demo_X, demo.target)
        rate = 1 / sum(1 / members[b, tta][0] for b in backbones)
        cpu = sum(members[b, tta][1] for b in backbones)
        # Mean of the four domains for each split: the rows share their splits, so they compare split by split.
        per_split = np.mean(list(within.values()), axis=0) if len(within) == 4 else None
        results[row] = dict(
            within={d: s.mean() for d, s in within.items()},
            per_split=per_split,
            mean=None if per_split is None else per_split.mean(),
            aw=aw,
            shot=shot,
            demo=demo_acc,
            rate=rate,
            cpu=cpu,
        )
        print(
            f"  {row} ({time.perf_counter() - t_row:.0f} s): within {cell(results[row]['mean'])}, "
            f"A→W S {cell(aw[0])}, ST {cell(aw[1])}, Daumé {cell(aw[2])}, C 3-shot {cell(shot)}, "
            f"demo {cell(demo_acc)}",
            flush=True,
        )
    retime = time_members(["Lite0"], demo_paths)[("Lite0", None)]

    base, base_cpu = members.get(("Lite0", None), retime)[:2]
    head = [
        "recipe",
        *(f"{DOMAINS[d]}" for d in DOMAINS),
        "mean",
        "A→W S",
        "A→W ST",
        "A→W Daumé",
        "C 3-shot",
        "demo",
        "img/s",
        "CPU ms/img",
        "cost",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row, r in results.items():
        cells = [cell(r["within"].get(d)) for d in DOMAINS]
        cells += [f"**{cell(r['mean'])}**", *map(cell, r["aw"]), cell(r["shot"]), cell(r["demo"])]
        cells += [f"{r['rate']:.1f}", f"{1000 * r['cpu']:.0f}", f"{r['cpu'] / base_cpu:.1f}×"]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(lines))
    if "Lite0" in results and results["Lite0"]["per_split"] is not None:
        base_splits = results["Lite0"]["per_split"]
        print(
            f"\nwithin-domain mean minus Lite0's, paired by split (mean ± std over {len(base_splits)} splits; "
            f"Lite0's own splits: std {100 * base_splits.std():.2f}):"
        )
        for row, r in results.items():
            if row != "Lite0" and r["per_split"] is not None:
                diff = 100 * (r["per_split"] - base_splits)
                print(
                    f"  {row}: {diff.mean():+.2f} ± {diff.std():.2f} (higher on {(diff > 0).sum()} of "
                    f"{len(diff)} splits)"
                )
    resolution = [row for row in results if RESOLUTION.get(row) in results]
    if resolution:
        print(
            "\nresolution: each row minus its backbone at its own size (within-domain mean paired by split, "
            "mean ± std; C 3-shot and demo: differences of the means):"
        )
        for row in resolution:
            own = results[RESOLUTION[row]]
            r = results[row]
            line = f"  {row}:"
            if r["per_split"] is not None and own["per_split"] is not None:
                diff = 100 * (r["per_split"] - own["per_split"])
                line += f" within {diff.mean():+.2f} ± {diff.std():.2f} (higher on {(diff > 0).sum()} of {len(diff)})"
            if r["shot"] is not None and own["shot"] is not None:
                line += f", C 3-shot {100 * (r['shot'] - own['shot']):+.2f}"
            line += f", demo {100 * (r['demo'] - own['demo']):+.2f}, cost {r['cpu'] / own['cpu']:.2f}× its own size"
            print(line)
    print(f"\ncommand: python benchmarks/bench_recipes.py {shlex.join(sys.argv[1:] if argv is None else argv)}")
    print(
        f"Lite0: {base:.1f} img/s, {1000 * base_cpu:.0f} CPU ms/img at the start; {retime[0]:.1f} img/s, "
        f"{1000 * retime[1]:.0f} CPU ms/img at the end (load average now {os.getloadavg()[0]:.1f}); "
        f"total {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
