"""Resumable sharded extraction in this process (no Dask): extract_shards and load_shards."""

import json
import os
import shutil

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sk_decaf import DeCAFTransformer
from sk_decaf.parallel import extract_shards, load_shards
from tests.conftest import TINY


def _decaf(**params):
    return DeCAFTransformer(TINY, **{"weights": "random", "random_state": 0, "engine": "torch", **params})


@pytest.fixture(scope="module")
def paths(demo):
    return demo.paths[::8]  # 25 images


@pytest.fixture(scope="module")
def local(paths):
    return _decaf().fit(paths).transform(paths)


def _stats(folder):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("shard-*.npy")}


@pytest.mark.parametrize("shard_size, n_shards", [(7, 4), (25, 1), (100, 1)])
def test_shards_equal_one_transform(paths, local, tmp_path, shard_size, n_shards):
    out = tmp_path / "out"
    report = extract_shards(_decaf(), paths, out, shard_size=shard_size, metadata={"target": list(range(25))})
    assert (report.n_shards, report.computed, report.skipped, report.failures) == (
        n_shards,
        list(range(n_shards)),
        [],
        [],
    )
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] + [f"shard-{k:06d}.npy" for k in range(n_shards)]
    data = load_shards(out)
    assert data.features.dtype == np.float32 and data.features.shape == local.shape
    assert_allclose(data.features, local, rtol=1e-4, atol=1e-4)
    assert data.paths == list(paths) and data.target == list(range(25)) and data.failures == []
    est = _decaf().fit(paths)
    assert data.layers == est.layers_ and data.feature_names.tolist() == est.get_feature_names_out().tolist()
    mapped = load_shards(out, mmap_mode="r")
    assert mapped.features is None and isinstance(mapped.shards[0], np.memmap)
    assert_allclose(np.concatenate(mapped.shards), local, rtol=1e-4, atol=1e-4)


def test_resume_computes_only_the_missing_shards(paths, local, tmp_path):
    out = tmp_path / "out"
    extract_shards(_decaf(), paths, out, shard_size=6)  # 5 shards
    for k in (1, 4):
        (out / f"shard-00000{k}.npy").unlink()
    (out / ".tmp-shard-000001.npy").write_bytes(b"half a shard")  # left by a killed writer
    kept = _stats(out)
    report = extract_shards(_decaf(), paths, out, resume=True)  # the shard size is the manifest's
    assert report.computed == [1, 4] and report.skipped == [0, 2, 3]
    assert {name: s for name, s in _stats(out).items() if name in kept} == kept  # untouched
    assert not list(out.glob(".tmp-*"))
    assert_allclose(load_shards(out).features, local, rtol=1e-4, atol=1e-4)
    # A finished job resumed again computes nothing.
    assert extract_shards(_decaf(), paths, out, resume=True).computed == []


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: (_decaf(layer=-3), p, 6), "config differ"),
        (lambda p: (_decaf(random_state=1), p, 6), "config differ"),
        (lambda p: (_decaf(), p[:-1], 6), "paths differ"),
        (lambda p: (_decaf(), p, 5), "shard_size differ"),
    ],
)
def test_resume_refuses_another_job(paths, tmp_path, change, message):
    out = tmp_path / "out"
    extract_shards(_decaf(), paths[:12], out, shard_size=6)
    est, other_paths, size = change(paths[:12])
    with pytest.raises(ValueError, match=f"Cannot resume .*: its {message}"):
        extract_shards(est, other_paths, out, shard_size=size, resume=True)


def test_existing_output_needs_resume(paths, tmp_path):
    out = tmp_path / "out"
    extract_shards(_decaf(), paths[:4], out, shard_size=2)
    with pytest.raises(ValueError, match="already holds a shard manifest: pass resume=True"):
        extract_shards(_decaf(), paths[:4], out, shard_size=2)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="non-empty folder without a shard manifest"):
        extract_shards(_decaf(), paths[:4], tmp_path / "other", shard_size=2)
    assert os.listdir(tmp_path / "other") == ["notes.txt"]


def test_bad_image_stops_the_job_with_its_global_index_then_resume(paths, local, tmp_path):
    items = [str(shutil.copy(p, tmp_path / f"{i:02d}.jpg")) for i, p in enumerate(paths)]
    good = open(items[13], "rb").read()
    open(items[13], "wb").write(good[:300])  # truncated: in shard 2 (images 12 to 17)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"^image 13 \('.*13\.jpg'\): cannot decode") as info:
        extract_shards(_decaf(), items, out, shard_size=6)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-000000.npy", "shard-000001.npy"]
    with pytest.raises(ValueError, match=r"unfinished extraction \(2 of 5 shards\); resume it"):
        load_shards(out)
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    open(items[13], "wb").write(good)  # fixed: the job resumes where it stopped
    report = extract_shards(_decaf(), items, out, resume=True)
    assert report.computed == [2, 3, 4]
    assert_allclose(load_shards(out).features, local, rtol=1e-4, atol=1e-4)


def test_on_error_nan_records_the_failures(paths, local, tmp_path):
    items = list(paths)
    (tmp_path / "empty.jpg").write_bytes(b"")
    items[8] = str(tmp_path / "empty.jpg")
    items[20] = str(tmp_path / "missing.jpg")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="2 of 25 images could not be featurised"):
        report = extract_shards(_decaf(on_error="nan"), items, out, shard_size=6)
    assert [(f["index"], f["item"]) for f in report.failures] == [(8, items[8]), (20, items[20])]
    assert "image 8 (" in report.failures[0]["message"] and "image 20 (" in report.failures[1]["message"]
    data = load_shards(out)
    assert data.failures == report.failures
    assert np.isnan(data.features[[8, 20]]).all()
    keep = np.ones(25, bool)
    keep[[8, 20]] = False
    assert_allclose(data.features[keep], local[keep], rtol=1e-4, atol=1e-4)


def test_only_paths_are_sharded(rgb_arrays, tmp_path):
    with pytest.raises(ValueError, match="takes image file paths"):
        extract_shards(_decaf(), rgb_arrays, tmp_path / "out")
    with pytest.raises(ValueError, match="shard_size must be a positive int"):
        extract_shards(_decaf(), ["a.jpg"], tmp_path / "out", shard_size=0)
