"""The activation cache: one forward pass per image, safe across processes, never wrong features."""

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer
from sk_decaf._cache import ActivationCache, CacheError
from sk_decaf.transformers import _extract
from tests.conftest import TINY, assert_features_close, run_in_threads


def tiny(cache, **kwargs):
    params = dict(backbone=TINY, layer="pre_logits", weights="random", random_state=0, engine="torch", cache=cache)
    params.update(kwargs)
    return DeCAFTransformer(**params)


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "activations.sqlite")


def computed(est):
    return est.cache_info()["computed"]


def test_hits_and_misses_are_counted(cache, image_files):
    est = tiny(cache).fit(image_files)
    first = est.transform(image_files[:3])
    assert est.cache_info()["computed"] == 3 and est.cache_info()["hits"] == 0
    again = est.transform(image_files[:3])
    assert computed(est) == 3 and est.cache_info()["hits"] == 3
    assert_allclose(again, first, rtol=0)  # hits return the stored float32 bytes: exact
    est.transform(image_files)  # 3 hits, 2 new images
    assert computed(est) == 5 and est.cache_info()["hits"] == 6


def test_cached_features_equal_uncached(cache, image_files):
    plain = tiny(None).fit_transform(image_files)
    cached = tiny(cache).fit(image_files)
    cached.transform(image_files)
    assert_features_close(cached.transform(image_files), plain)


def test_layer_subset_is_served_from_a_superset_entry(cache, image_files):
    both = tiny(cache, layer=["blocks.1", "pre_logits"], cache_layers="requested").fit(image_files)
    X = both.transform(image_files)
    single = tiny(cache, layer="pre_logits", cache_layers="requested").fit(image_files)
    Y = single.transform(image_files)
    assert computed(single) == 5  # the single layer was a pure cache hit
    assert_allclose(Y, X[:, both.feature_dims_["blocks.1"] :], rtol=0)  # the stored bytes of the same pass


def test_missing_layer_runs_the_network_only_for_missing_images(cache, image_files):
    pre = tiny(cache, layer="pre_logits", cache_layers="requested").fit(image_files)
    pre.transform(image_files[:3])
    assert computed(pre) == 3
    other = tiny(cache, layer="blocks.1", cache_layers="requested").fit(image_files)
    other.transform(image_files[:3])  # a layer that was not stored: these 3 images run again
    assert computed(other) == 6
    pre.transform(image_files)  # only the 2 images never seen run
    assert computed(pre) == 8


def test_auto_cache_layers_make_a_layer_sweep_one_pass(cache, image_files):
    for layer in ["pre_logits", "blocks.1", "blocks.3", -1, ["blocks.0", "pre_logits"]]:
        tiny(cache, layer=layer).fit(image_files).transform(image_files)
    assert computed(tiny(cache).fit(image_files)) == 5


@pytest.mark.parametrize(
    "change",
    [
        # pre_logits is pooled by the network itself: max pooling is asked of a spatial layer
        {"preprocess": "decaf"},
        {"random_state": 1},
        {"pooling": "max", "layer": "blocks.1"},
    ],
)
def test_key_changes_with_what_changes_the_activations(change, cache, image_files):
    base = tiny(cache).fit(image_files)
    base.transform(image_files)
    other = tiny(cache, **change).fit(image_files)
    assert other._resolution.key != base._resolution.key
    X = other.transform(image_files)
    assert other.cache_info()["computed"] == 5 and other.cache_info()["hits"] == 0
    assert_features_close(X, tiny(None, **change).fit_transform(image_files))


def test_weights_file_content_is_part_of_the_key(cache, tmp_path, image_files):
    import torch

    path = tmp_path / "w.pth"
    torch.save(tiny(None, random_state=0).fit(image_files).backbone_.state_dict(), path)
    a = tiny(cache, weights=path).fit(image_files)
    torch.save(tiny(None, random_state=1).fit(image_files).backbone_.state_dict(), path)
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    b = tiny(cache, weights=path).fit(image_files)
    assert a.weights_digest_ != b.weights_digest_ and a._resolution.key != b._resolution.key


def test_grid_search_clones_share_the_cache(cache, demo):
    paths, y = demo.paths[::10], demo.target[::10]  # 20 images
    pipe = Pipeline([("decaf", tiny(cache)), ("svm", LinearSVC())])
    grid = GridSearchCV(
        pipe,
        {"decaf__layer": ["blocks.2", "blocks.4", "pre_logits"], "svm__C": [0.1, 1.0]},
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(paths, y)
    assert grid.best_estimator_.named_steps["decaf"].cache_info()["computed"] == 20  # each image once


def test_duplicates_are_computed_once(cache, image_files):
    est = tiny(cache).fit(image_files)
    X = est.transform(image_files + image_files[:2])
    assert computed(est) == 5
    assert_allclose(X[-2:], X[:2], rtol=0)  # copies of one computed row


def test_lookups_in_chunks_keep_hits_and_duplicates_aligned(cache, image_files, monkeypatch):
    est = tiny(cache).fit(image_files)
    est.transform(image_files[:2])
    monkeypatch.setattr(_extract, "CACHE_CHUNK", 3)  # hits, misses and repeats straddle chunk borders
    items = image_files + image_files[::-1] + image_files[:1]
    X = est.transform(items)
    assert computed(est) == 5
    assert_features_close(X, tiny(None).fit_transform(items))


def test_clear_cache_and_max_bytes(cache, image_files):
    est = tiny(cache, cache_layers="requested").fit(image_files)
    est.transform(image_files)
    assert est.cache_info()["entries"] == 5
    est.clear_cache()
    assert est.cache_info() == {"entries": 0, "images": 0, "bytes": 0, "hits": 0, "computed": 0}
    dim = est.n_features_out_
    bounded = tiny(cache, cache_layers="requested", cache_max_bytes=3 * 4 * dim).fit(image_files)
    bounded.transform(image_files)
    info = bounded.cache_info()
    assert info["bytes"] <= 3 * 4 * dim and info["entries"] == 3


def test_least_recently_used_vectors_are_evicted_first(tmp_path):
    store = ActivationCache(tmp_path / "c.sqlite", max_bytes=2 * 16)
    with store:
        for key in ["a", "b"]:
            store.put("cfg", [(key, "l", np.full(4, 1.0, np.float32))])
            time.sleep(0.01)
        store.get("cfg", ["a"], {"l": 4})  # touch a: b is now the least recently used
        time.sleep(0.01)
        store.put("cfg", [("c", "l", np.zeros(4, np.float32))])
        store.evict()
        assert set(store.get("cfg", ["a", "b", "c"], {"l": 4})) == {"a", "c"}


def test_garbage_file_is_a_clear_error(cache, image_files):
    with open(cache, "wb") as f:
        f.write(os.urandom(4096))
    with pytest.raises(CacheError, match="corrupt or not a cache"):
        tiny(cache).fit(image_files).transform(image_files)
    assert isinstance(CacheError("x"), ValueError)


def test_foreign_database_is_left_untouched(cache, image_files):
    with sqlite3.connect(cache) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
        conn.execute("INSERT INTO people VALUES ('ada')")
    with pytest.raises(CacheError, match="not an sk_decaf activation cache"):
        tiny(cache).fit(image_files).transform(image_files)
    with sqlite3.connect(cache) as conn:
        assert conn.execute("SELECT name FROM people").fetchall() == [("ada",)]


def test_corrupted_vector_is_recomputed_not_returned(cache, image_files):
    est = tiny(cache, cache_layers="requested").fit(image_files)
    good = est.transform(image_files)
    with sqlite3.connect(cache) as conn:  # flip bytes of one stored vector behind the cache's back
        image, data = conn.execute("SELECT image, data FROM activations LIMIT 1").fetchone()
        conn.execute("UPDATE activations SET data=? WHERE image=?", (bytes(len(data)), image))
    # Recomputed alone (a batch of 1, not 5): equal up to float32 kernel differences, and far from the zeros.
    assert_features_close(est.transform(image_files), good)
    assert computed(est) == 6  # the damaged one went through the network again


def _writer(path, key_prefix, n):
    store = ActivationCache(path)
    for i in range(n):
        store.put("cfg", [(f"{key_prefix}{i}", "l", np.full(64, i, np.float32))])
    store.close()


def test_two_processes_write_the_same_cache(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, prefix, 150)) for prefix in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with ActivationCache(path) as store:
        got = store.get("cfg", [f"{p}{i}" for p in "ab" for i in range(150)], {"l": 64})
    assert len(got) == 300
    assert all(float(v["l"][0]) == float(k[1:]) for k, v in got.items())


def test_many_openers_of_a_new_cache_all_succeed(tmp_path):
    """Connections opening a new cache at the same moment: none is told the file is corrupt.

    The WAL switch of two fresh connections can be refused at once ("database is locked", without the busy
    wait); before opening retried, about one trial in fifteen failed here. Any exception of any thread fails
    the test (``run_in_threads``), not only a ``CacheError``.
    """
    for trial in range(60):
        path = str(tmp_path / f"c{trial}.sqlite")

        def open_and_read(_, path=path):
            with ActivationCache(path) as cache:
                assert cache.info()["images"] == 0

        run_in_threads(open_and_read, 8)
        with ActivationCache(path) as cache:
            assert cache.info() == {"entries": 0, "images": 0, "bytes": 0, "hits": 0, "computed": 0}


def _busy_error(path):
    """The error SQLite gives a connection that must not wait for a lock: SQLITE_BUSY, "database is locked"."""
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked") as refused:
            other.execute("BEGIN IMMEDIATE")
        holder.execute("ROLLBACK")
    finally:
        holder.close()
        other.close()
    return refused.value


def test_opening_a_new_cache_retries_while_it_is_locked(tmp_path, monkeypatch):
    """The race above made to happen on every run: SQLite refuses the first two attempts at opening at once,
    as it refuses one of two simultaneous WAL switches; the third attempt opens the cache."""
    busy = _busy_error(tmp_path / "other.sqlite")
    real_open = ActivationCache._open
    attempts = []

    def refused_twice(self):
        attempts.append(self.path)
        if len(attempts) <= 2:
            raise busy
        return real_open(self)

    monkeypatch.setattr(ActivationCache, "_open", refused_twice)
    with ActivationCache(tmp_path / "c.sqlite", timeout=30) as cache:
        assert cache.info()["images"] == 0
    assert len(attempts) == 3
    # Any other failure is not retried: the file is reported as unusable at the first attempt.
    attempts.clear()

    def unreadable(self):
        attempts.append(self.path)
        raise sqlite3.DatabaseError("file is not a database")

    monkeypatch.setattr(ActivationCache, "_open", unreadable)
    with pytest.raises(CacheError, match="corrupt or not a cache"):
        ActivationCache(tmp_path / "d.sqlite", timeout=30).info()
    assert len(attempts) == 1


def test_a_cache_locked_past_its_timeout_says_so(cache):
    """A lock held longer than ``timeout`` is reported as a lock, not as a corrupt file."""
    holder = sqlite3.connect(cache, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a new, empty file held by another writer
    try:
        with pytest.raises(CacheError, match="stayed locked by another process for 0.2 s"):
            ActivationCache(cache, timeout=0.2).info()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert ActivationCache(cache).info()["images"] == 0  # usable once the lock is gone


def test_two_transformers_in_two_processes(cache, image_files):
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {os.getcwd()!r})
        from sk_decaf import DeCAFTransformer
        paths = {image_files!r}
        est = DeCAFTransformer(backbone={TINY!r}, layer="pre_logits", weights="random", random_state=0,
                               engine="torch", cache={cache!r}, batch_size=1).fit(paths)
        est.transform(paths * 3)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(300) for p in procs] == [0, 0]
    est = tiny(cache).fit(image_files)
    assert_features_close(est.transform(image_files), tiny(None).fit_transform(image_files))
    assert est.cache_info()["images"] == 5


def test_killed_writer_leaves_no_wrong_entry(tmp_path):
    path = str(tmp_path / "c.sqlite")
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {os.getcwd()!r})
        import numpy as np
        from sk_decaf._cache import ActivationCache
        store = ActivationCache({path!r})
        i = 0
        while True:  # big batches, so that the kill lands inside a transaction
            store.put("cfg", [(f"k{{i}}_{{j}}", "l", np.full(20000, i, np.float32)) for j in range(50)])
            i += 1
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(3):  # let it commit a few batches
        proc.stdout.readline()
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with ActivationCache(path) as store:
        keys = [f"k{i}_{j}" for i in range(200) for j in range(50)]
        got = store.get("cfg", keys, {"l": 20000})
    assert len(got) >= 150 and len(got) % 50 == 0  # whole transactions only
    for key, value in got.items():
        batch = int(key[1:].split("_")[0])
        assert (value["l"] == batch).all()
