"""sk_decaf.parallel on a two-process Dask LocalCluster: transform_dask, sharded extraction, GridSearchCV
under joblib's dask backend, dask-ml's ParallelPostFit; all on the tiny random-weight backbone."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sk_decaf import DeCAFTransformer
from tests.conftest import TINY

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from sk_decaf.parallel import extract_shards, load_shards, transform_dask  # noqa: E402


def _decaf(**params):
    return DeCAFTransformer(TINY, **{"weights": "random", "random_state": 0, "engine": "torch", **params})


def _network_builds():
    """In a worker: how many timm networks this process built (counting starts at the first call)."""
    import timm

    if not hasattr(timm, "_sk_decaf_builds"):
        timm._sk_decaf_builds = [0]
        build = timm.create_model

        def counted(*args, **kwargs):
            timm._sk_decaf_builds[0] += 1
            return build(*args, **kwargs)

        timm.create_model = counted
    return timm._sk_decaf_builds[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # The workers start before the per-test home is set: give them their own, never ~/.cache.
    home = str(tmp_path_factory.mktemp("worker_home"))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, env={"SK_DECAF_HOME": home}
    ) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as client:
        client.run(_network_builds)
        yield client


@pytest.fixture(scope="module")
def paths(demo):
    return demo.paths[::4]  # 50 images, 5 per class


@pytest.fixture(scope="module")
def local(paths):
    return _decaf().fit(paths).transform(paths)


def test_transform_dask_equals_local_and_loads_once_per_worker(client, paths):
    est = _decaf(random_state=7).fit(paths)  # a configuration of its own: no worker has it loaded yet
    local = est.transform(paths)
    before = client.run(_network_builds)
    features = transform_dask(est, paths, chunksize=7)  # 8 tasks, the last one of 1 image
    assert isinstance(features, da.Array)
    assert features.shape == local.shape and features.dtype == np.float32 and features.numblocks == (8, 1)
    X = features.compute()
    assert X.dtype == np.float32
    assert_allclose(X, local, rtol=1e-4, atol=1e-4)
    first = client.run(_network_builds)
    builds = [first[w] - before[w] for w in first]
    assert sum(builds) >= 1 and max(builds) == 1, builds  # once per worker, not once per task
    # Later calls with this fitted transformer, or an unfitted one that fits the same, find it loaded.
    assert_allclose(transform_dask(est, paths[::-1], chunksize=5).compute(), local[::-1], rtol=1e-4, atol=1e-4)
    assert_allclose(transform_dask(_decaf(random_state=7), paths).compute(), local, rtol=1e-4, atol=1e-4)
    assert client.run(_network_builds) == first


def test_transform_dask_of_a_dask_array_keeps_its_chunks(client, paths, local):
    arr = da.from_array(np.asarray(paths, dtype=object), chunks=20)
    features = transform_dask(_decaf(), arr)
    assert features.chunks[0] == (20, 20, 10)
    assert_allclose(features.compute(), local, rtol=1e-4, atol=1e-4)


def test_transform_dask_bad_image_names_its_global_index(client, paths, tmp_path):
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(open(paths[0], "rb").read()[:300])
    items = list(paths[:30])
    items[23] = str(bad)  # the third item of the fourth block
    with pytest.raises(ValueError, match=r"image 23 \('.*truncated\.jpg'\)") as info:
        transform_dask(_decaf(), items, chunksize=7).compute()
    assert "\n" not in str(info.value)


def test_transform_dask_on_error_nan(client, paths, local, tmp_path):
    est = _decaf()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(open(paths[0], "rb").read()[:300])
    items = list(paths[:30])
    items[23] = str(bad)
    X = transform_dask(est.set_params(on_error="nan"), items, chunksize=7).compute()
    assert np.isnan(X[23]).all()
    keep = np.arange(30) != 23
    assert_allclose(X[keep], local[:30][keep], rtol=1e-4, atol=1e-4)


def test_extract_shards_on_the_cluster_equals_local(client, paths, local, tmp_path):
    report = extract_shards(_decaf(), paths, tmp_path / "out", shard_size=8, client=client)
    assert (report.n_shards, report.computed, report.skipped) == (7, list(range(7)), [])
    assert_allclose(load_shards(tmp_path / "out").features, local, rtol=1e-4, atol=1e-4)
    # Resume after losing two shards: only those are computed again.
    for k in (2, 5):
        (tmp_path / "out" / f"shard-00000{k}.npy").unlink()
    again = extract_shards(_decaf(), paths, tmp_path / "out", resume=True, client=client)
    assert again.computed == [2, 5] and again.skipped == [0, 1, 3, 4, 6]
    assert_allclose(load_shards(tmp_path / "out").features, local, rtol=1e-4, atol=1e-4)


def test_cli_extract_on_a_scheduler_address(cluster, demo, tmp_path, capsys):
    from sk_decaf.cli import main

    root = tmp_path / "data"
    for c in range(2):
        (root / demo.target_names[c]).mkdir(parents=True)
        for path in [p for p, t in zip(demo.paths, demo.target) if t == c][:6]:
            shutil.copy(path, root / demo.target_names[c])
    out = tmp_path / "shards"
    argv = [
        "extract",
        str(root),
        "-o",
        str(out),
        "--shard-size",
        "5",
        "--scheduler",
        cluster.scheduler_address,
        "--backbone",
        TINY,
        "--weights",
        "random",
        "--engine",
        "torch",
    ]
    assert main(argv) == 0
    assert f"12 images x 256 features in 3 shards: 3 computed on {cluster.scheduler_address}" in capsys.readouterr().out
    data = load_shards(out)
    assert data.target == [0] * 6 + [1] * 6
    assert_allclose(data.features, _decaf().fit(data.paths).transform(data.paths), rtol=1e-4, atol=1e-4)


def test_grid_search_under_the_dask_backend_uses_the_cache(client, demo, tmp_path):
    """GridSearchCV over the layer, run by joblib's dask backend: every image goes through the network once."""
    import joblib
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    paths, y = demo.paths[::5], demo.target[::5]  # 40 images, 4 per class
    decaf = _decaf(cache=str(tmp_path / "activations.sqlite"))

    def grid(n_jobs):
        return GridSearchCV(
            Pipeline([("decaf", decaf), ("svm", LinearSVC())]),
            {"decaf__layer": [-2, -3, -4]},
            cv=StratifiedKFold(2, shuffle=True, random_state=0),
            n_jobs=n_jobs,
            error_score="raise",
        )

    # Warm the cache on the cluster first: every later fit and score of every clone, fold and layer is a hit.
    transform_dask(decaf, paths, chunksize=10).compute()
    with joblib.parallel_backend("dask"):
        on_dask = grid(-1).fit(paths, y)
    info = on_dask.best_estimator_.named_steps["decaf"].cache_info()
    assert info["computed"] == len(paths)
    assert info["hits"] >= 2 * 3 * len(paths)  # each layer's fit and score on both folds, all hits
    # The same scores as the search in this process.
    assert_allclose(on_dask.cv_results_["mean_test_score"], grid(None).fit(paths, y).cv_results_["mean_test_score"])


def test_dask_ml_parallel_post_fit_after_transform_dask(client, demo):
    """dask-ml's ParallelPostFit takes over after transform_dask: the classifier predicts block-wise."""
    wrappers = pytest.importorskip("dask_ml.wrappers")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train, test = demo.paths[::10], demo.paths[5::10]
    pipe = make_pipeline(_decaf(), LogisticRegression(max_iter=500)).fit(train, demo.target[::10])
    model = wrappers.ParallelPostFit(pipe[-1])
    features = transform_dask(pipe[0], da.from_array(np.asarray(test, dtype=object), chunks=7))
    predicted = model.predict(features)
    assert isinstance(predicted, da.Array)
    assert predicted.compute().tolist() == pipe.predict(test).tolist()


def test_file_urls_of_a_local_tree_on_worker_processes(client, paths, local, tmp_path):
    """file:// URLs, opened through fsspec by each worker process: the paths' features; a missing one a NaN."""
    pytest.importorskip("fsspec")
    urls = [Path(p).resolve().as_uri() for p in paths[:30]]
    assert_allclose(transform_dask(_decaf(), urls, chunksize=8).compute(), local[:30], rtol=1e-4, atol=1e-4)
    urls[17] = (tmp_path / "gone.jpg").as_uri()
    with pytest.warns(UserWarning, match="1 of 30 images could not be featurised"):
        report = extract_shards(_decaf(on_error="nan"), urls, tmp_path / "out", shard_size=8, client=client)
    assert [(f["index"], f["item"]) for f in report.failures] == [(17, urls[17])]
    features = load_shards(tmp_path / "out").features
    assert np.isnan(features[17]).all()
    keep = np.arange(30) != 17
    assert_allclose(features[keep], local[:30][keep], rtol=1e-4, atol=1e-4)
