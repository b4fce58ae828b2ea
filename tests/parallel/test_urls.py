"""Dask and shards read URLs on the workers: fsspec's memory:// file system on a LocalCluster of threads.

memory:// is per process: workers in other processes would not see the files this process writes, so these
tests run the workers as threads of this process (``processes=False``). The file:// URLs of a local tree are
tested on the two-process cluster of test_dask.py.
"""

import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from PIL import Image

from sk_decaf import DeCAFTransformer
from tests.conftest import TINY

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
fsspec = pytest.importorskip("fsspec")

from sk_decaf.parallel import extract_shards, load_shards, transform_dask  # noqa: E402


def _decaf(**params):
    return DeCAFTransformer(TINY, **{"weights": "random", "random_state": 0, "engine": "torch", **params})


@pytest.fixture(scope="module")
def paths(demo):
    return demo.paths[::10]  # 20 images, 2 per class


@pytest.fixture(scope="module")
def local(paths):
    return _decaf().fit(paths).transform(paths)


@pytest.fixture(scope="module")
def bucket(paths):
    """The images copied to memory://<bucket>/<class>/<name>; their URLs, in the order of ``paths``."""
    fs = fsspec.filesystem("memory")
    root = f"/bucket-{uuid.uuid4().hex[:8]}"
    urls = []
    for path in paths:
        name = "/".join(Path(path).parts[-2:])
        fs.pipe_file(f"{root}/photos/{name}", Path(path).read_bytes())
        urls.append(f"memory://{root}/photos/{name}")
    yield urls
    fs.rm(root, recursive=True)


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_transform_dask_of_urls_equals_the_local_paths(client, bucket, local):
    features = transform_dask(_decaf(), bucket, chunksize=6)
    assert features.numblocks == (4, 1)
    assert_allclose(features.compute(), local, rtol=1e-4, atol=1e-4)
    arr = da.from_array(np.asarray(bucket, dtype=object), chunks=8)  # a dask array of URLs
    assert_allclose(transform_dask(_decaf(), arr).compute(), local, rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:1 of 4 images could not be read")  # the worker's, here in this process
def test_a_missing_url_follows_on_error(client, bucket, local):
    items = list(bucket)
    items[9] = items[9].replace("photos", "elsewhere")
    with pytest.raises(ValueError, match=rf"image 9 \('{items[9]}'\): file does not exist"):
        transform_dask(_decaf(), items, chunksize=4).compute()
    X = transform_dask(_decaf(on_error="nan"), items, chunksize=4).compute()
    assert np.isnan(X[9]).all()
    assert_allclose(np.delete(X, 9, axis=0), np.delete(local, 9, axis=0), rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:1 of 8 images could not be read")  # the worker's, here in this process
def test_extract_shards_of_urls_on_the_cluster_and_locally(client, bucket, local, tmp_path):
    items = list(bucket)
    items[13] = items[13] + ".missing"
    for where, on in (("cluster", client), ("here", None)):
        with pytest.warns(UserWarning, match="1 of 20 images could not be featurised"):
            report = extract_shards(_decaf(on_error="nan"), items, tmp_path / where, shard_size=8, client=on)
        assert [(f["index"], f["item"]) for f in report.failures] == [(13, items[13])]
        assert "file does not exist" in report.failures[0]["message"]
        data = load_shards(tmp_path / where)
        assert data.paths == items  # the manifest holds the names
        keep = np.arange(20) != 13
        assert np.isnan(data.features[13]).all()
        assert_allclose(data.features[keep], local[keep], rtol=1e-4, atol=1e-4)


def _graph_bytes(features):
    return len(pickle.dumps(dict(features.__dask_graph__())))


def test_only_names_travel_in_the_task_graph(tmp_path):
    """The graph of 12 URLs is as large for 1-megapixel images as for 32x32 ones; bytes are refused."""
    fs = fsspec.filesystem("memory")
    root = f"/sizes-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    sizes = {}
    try:
        for side in (32, 1024):
            urls = []
            for i in range(12):
                img = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
                name = f"{root}/s{side:04d}/{i:02d}.png"
                with fs.open(name, "wb") as f:
                    img.save(f, format="PNG")
                urls.append(f"memory://{name}")
            sizes[side] = (_graph_bytes(transform_dask(_decaf(), urls, chunksize=4)), fs.du(f"{root}/s{side:04d}"))
    finally:
        fs.rm(root, recursive=True)
    (small_graph, _), (large_graph, large_data) = sizes[32], sizes[1024]
    assert large_data > 1000 * small_graph  # 12 images of 3 MB, against a graph of a few kilobytes
    assert abs(large_graph - small_graph) <= 64  # the same names, the same weights-free transformer
    data = [b"\xff\xd8\xff" + bytes(100)] * 3
    with pytest.raises(ValueError, match=r"transform_dask takes image file paths or URLs .* item 0 is a bytes"):
        transform_dask(_decaf(), data)
    with pytest.raises(ValueError, match=r"extract_shards takes image file paths or URLs .* item 0 is a bytes"):
        extract_shards(_decaf(), data, tmp_path / "out")
