"""Instance retrieval on Office-Caltech-10: webcam queries against the dslr database.

Features are DeCAF features of the default backbone (the ImageNet-pretrained
efficientnet_lite0, shipped offline). A database image is relevant to a query
when both show the same class. Printed: mAP (non-interpolated, and the
trapezoidal Oxford/Holidays variant) of

* raw features, Euclidean distance;
* L2 normalisation only;
* L2 -> PCA -> L2 (no whitening) and
  L2 -> PCA whitening -> L2 (RetrievalIndex, Azizpour et al. section 5) for
  each PCA dimension of ``--n-components``; the PCA is learned on the 157
  database images, so whitening many dimensions amplifies noise;
* the whitened variant with spatial search over the 1 + 4 windows of
  ``--levels 2`` (skip with ``--levels 0``),

each as a ratio to the raw-feature mAP, and the time of every step.

Run::

    python benchmarks/bench_retrieval.py [--data DIR] [--n-components 16,32,128] [--levels 2]

``DIR`` defaults to ``$SK_DECAF_SHARED_DATA/office_caltech10``, else
``<repo>/../shared/data/office_caltech10``.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.preprocessing import normalize

from sk_decaf import DeCAFTransformer, RetrievalIndex, mean_average_precision, spatial_windows
from sk_decaf.datasets import load_office_caltech10


def _default_data():
    shared = os.environ.get("SK_DECAF_SHARED_DATA")
    if shared:
        return Path(shared) / "office_caltech10"
    base = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return base / "office_caltech10"


def _class_names(data):
    return np.asarray(data.target_names)[data.target]


def _scores(y_query, y_database, distances_or_ranking):
    return tuple(
        mean_average_precision(y_query, y_database, distances_or_ranking, interpolation=i)
        for i in ("none", "trapezoid")
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument(
        "--n-components",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[16, 32, 128],
        help="comma-separated PCA dimensions (default 16,32,128)",
    )
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"Office-Caltech-10 not found at {args.data}; pass --data.")

    database = load_office_caltech10(args.data, domain="dslr")
    queries = load_office_caltech10(args.data, domain="webcam")
    y_database, y_query = _class_names(database), _class_names(queries)
    print(f"database: dslr, {len(y_database)} images; queries: webcam, {len(y_query)} images")

    decaf = DeCAFTransformer(batch_size=args.batch_size).fit(list(database.paths))
    start = time.perf_counter()
    X_database = decaf.transform(list(database.paths))
    X_query = decaf.transform(list(queries.paths))
    print(
        f"DeCAF features ({decaf.layers_}, {X_database.shape[1]} dims, engine "
        f"{decaf.engine_}): {time.perf_counter() - start:.1f} s"
    )

    rows = []
    raw = euclidean_distances(X_query, X_database)
    rows.append(("raw, Euclidean", _scores(y_query, y_database, raw), 0.0))
    l2 = euclidean_distances(normalize(X_query), normalize(X_database))
    rows.append(("L2", _scores(y_query, y_database, l2), 0.0))
    for n_components in args.n_components:
        for whiten, name in [(False, "L2 -> PCA -> L2"), (True, "L2 -> PCA whitening -> L2")]:
            start = time.perf_counter()
            index = RetrievalIndex(n_components=n_components, whiten=whiten).fit(X_database)
            ranking = index.predict(X_query)
            rows.append(
                (f"{name}, d={index.n_components_}", _scores(y_query, y_database, ranking), time.perf_counter() - start)
            )

    if args.levels:
        start = time.perf_counter()
        n_windows = args.levels * (args.levels + 1) * (2 * args.levels + 1) // 6
        features = []
        for paths in (database.paths, queries.paths):
            crops = [crop for path in paths for crop in spatial_windows(path, levels=args.levels)]
            features.append(decaf.transform(crops).reshape(len(paths), n_windows, -1))
        print(f"window features ({n_windows} per image): {time.perf_counter() - start:.1f} s")
        for n_components in args.n_components:
            start = time.perf_counter()
            index = RetrievalIndex(n_components=n_components).fit(features[0])
            ranking = index.predict(features[1])
            rows.append(
                (
                    f"spatial L2 -> PCA whitening -> L2, d={n_components}",
                    _scores(y_query, y_database, ranking),
                    time.perf_counter() - start,
                )
            )

    base = rows[0][1][0]
    print(f"\n{'method':<48} {'mAP':>7} {'mAP trap.':>9} {'ratio':>6} {'time s':>7}")
    for name, (score, trapezoid), seconds in rows:
        print(f"{name:<48} {score:7.4f} {trapezoid:9.4f} {score / base:6.2f} {seconds:7.2f}")


if __name__ == "__main__":
    main()
