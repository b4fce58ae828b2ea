"""Bad items: one ValueError naming index and item on every path, or NaN rows with on_error="nan"."""

import os
import sqlite3
import subprocess
import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from PIL import Image

from sk_decaf import DeCAFTransformer
from sk_decaf._cache import CacheError
from tests.conftest import TINY


def tiny(**kwargs):
    params = dict(backbone=TINY, weights="random", random_state=0, engine="torch", layer="blocks.2")
    params.update(kwargs)
    return DeCAFTransformer(**params)


@pytest.fixture
def bad_files(tmp_path, image_files):
    """Good files with bad ones in between: corrupt, truncated, empty, missing, not an image."""
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(image_files[0], "rb").read()[:200])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    return [
        image_files[0],
        str(corrupt),
        image_files[1],
        str(truncated),
        str(empty),
        str(tmp_path / "missing.jpg"),
        str(text),
        image_files[2],
    ]


BAD = [1, 3, 4, 5, 6]


@pytest.mark.parametrize("with_cache", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_nan_rows_for_bad_items_and_aligned_good_rows(bad_files, image_files, with_cache, batch_size, tmp_path):
    cache = tmp_path / "c.sqlite" if with_cache else None
    decaf = tiny(on_error="nan", cache=cache, batch_size=batch_size).fit(bad_files)
    with pytest.warns(UserWarning, match="5 of 8 images could not be read") as record:
        X = decaf.transform(bad_files)
    message = str(record[0].message)
    for i in BAD:
        assert f"image {i} ({bad_files[i]!r})" in message
    assert np.isnan(X[BAD]).all()
    good = [i for i in range(len(bad_files)) if i not in BAD]
    ref = tiny().fit(image_files).transform([bad_files[i] for i in good])
    assert_allclose(X[good], ref, rtol=1e-4, atol=1e-5)
    if with_cache:  # nothing bad was cached: a second pass computes nothing and flags the same rows
        assert decaf.cache_info()["images"] == len(good)
        with pytest.warns(UserWarning):
            again = decaf.transform(bad_files)
        assert decaf.cache_info()["computed"] == len(good)
        assert_allclose(again, X, rtol=1e-6, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("with_cache", [False, True])
def test_raise_names_index_and_path_on_every_path(bad_files, with_cache, tmp_path):
    cache = tmp_path / "c.sqlite" if with_cache else None
    decaf = tiny(cache=cache).fit(bad_files)
    with pytest.raises(ValueError, match=r"image 1 \('.*corrupt\.jpg'\)"):
        decaf.transform([bad_files[0], bad_files[1], bad_files[2]])
    with pytest.raises(ValueError, match=r"image 0 \('.*missing\.jpg'\): file does not exist"):
        decaf.transform([bad_files[5]])


def test_rows_computed_before_a_failure_are_kept_in_the_cache(image_files, bad_files, tmp_path):
    """A bad item in batch k does not discard batch k - 1 (nor the good items of batch k)."""
    cache = tmp_path / "c.sqlite"
    items = image_files[:4] + [bad_files[1]] + image_files[4:]
    decaf = tiny(cache=cache, batch_size=2).fit(items)
    with pytest.raises(ValueError, match="image 4"):
        decaf.transform(items)
    assert decaf.cache_info()["images"] >= 4  # batches 0 and 1 (and the good part of batch 2)
    decaf.transform(image_files[:4])
    assert decaf.cache_info()["hits"] == 4


def test_out_file_is_not_left_behind_on_failure(bad_files, tmp_path):
    out = tmp_path / "features.npy"
    with pytest.raises(ValueError, match="image 1"):
        tiny().fit(bad_files).transform(bad_files[:3], out=out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("features")] == []


def test_out_file_with_nan_rows_is_complete(bad_files, tmp_path):
    out = tmp_path / "features.npy"
    with pytest.warns(UserWarning):
        X = tiny(on_error="nan").fit(bad_files).transform(bad_files, out=out)
    saved = np.load(out)
    assert_allclose(saved, X, equal_nan=True)
    assert np.isnan(saved[BAD]).all() and np.isfinite(np.delete(saved, BAD, axis=0)).all()


class _Unreadable:
    """A PIL-like object whose pixels cannot be read: fails while the cache computes its content key."""


def test_content_key_failure_names_the_index(image_files, tmp_path):
    img = Image.open(image_files[0])
    img.fp = None  # closed file: tobytes() needs to decode
    img.tile = [("jpeg", (0, 0) + img.size, 0, ("RGB", ""))]
    items = [image_files[1], img]
    decaf = tiny(cache=tmp_path / "c.sqlite").fit(items)
    with pytest.raises(ValueError, match=r"^image 1 \(PIL image, mode RGB"):
        decaf.transform(items)
    with pytest.warns(UserWarning, match="image 1"):
        X = tiny(cache=tmp_path / "c.sqlite", on_error="nan").fit(items).transform(items)
    assert np.isnan(X[1]).all() and np.isfinite(X[0]).all()


def test_unsupported_item_in_cache_path_names_index(image_files, tmp_path):
    items = [image_files[0], 42]
    with pytest.raises(ValueError, match=r"image 1 \(int\)"):
        tiny(cache=tmp_path / "c.sqlite").fit(items).transform(items)


def _make_readonly(path):
    """chattr +i works for root too; else chmod. Returns an undo callable, or None if impossible."""
    if os.geteuid() != 0:
        mode = os.stat(path).st_mode
        os.chmod(path, 0o555 if os.path.isdir(path) else 0o444)
        return lambda: os.chmod(path, mode)
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        return None
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_cache_serves_hits_and_computes_misses(image_files, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    cache = folder / "c.sqlite"
    ref = tiny(cache=cache).fit(image_files).transform(image_files[:3])
    undo = [_make_readonly(cache), _make_readonly(folder)]
    if None in undo:
        pytest.skip("cannot make a file read-only here")
    try:
        decaf = tiny(cache=cache).fit(image_files)
        with pytest.warns(UserWarning, match="read-only"):
            X = decaf.transform(image_files[:3])  # every image a hit: no write may be attempted
        assert_allclose(X, ref, rtol=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Y = decaf.transform(image_files)  # misses: computed, not stored
        assert_allclose(Y[:3], ref, rtol=1e-6)
        with pytest.warns(UserWarning, match="read-only"):
            assert decaf.cache_info()["images"] == 3
    finally:
        for u in reversed(undo):
            if u is not None:
                u()


def test_foreign_database_is_not_modified(image_files, tmp_path):
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
        conn.execute("INSERT INTO people VALUES ('ada')")
    before = path.read_bytes()
    with pytest.raises(CacheError, match="not an sk_decaf activation cache"):
        tiny(cache=path).fit(image_files).transform(image_files[:1])
    assert path.read_bytes() == before  # the journal mode too: it was not switched to WAL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_garbage_weights_file_is_a_clear_value_error(image_files, tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match="is not a PyTorch state dict") as info:
        DeCAFTransformer(TINY, weights=path, engine="torch").fit(image_files)
    assert "weights_only=False" not in str(info.value)


def test_garbage_weights_in_cli_is_one_line_without_traceback(image_files, tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(os.urandom(4096))
    folder = tmp_path / "data" / "cls"
    folder.mkdir(parents=True)
    for p in image_files[:2]:
        (folder / os.path.basename(p)).write_bytes(open(p, "rb").read())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sk_decaf",
            "extract",
            str(tmp_path / "data"),
            "-o",
            str(tmp_path / "f.npz"),
            "--backbone",
            TINY,
            "--weights",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "not a PyTorch state dict" in proc.stderr


@pytest.mark.parametrize("single", ["array", "path", "pil"])
def test_single_images_are_all_rejected_alike(single, rgb_arrays, image_files):
    item = {"array": rgb_arrays[0], "path": image_files[0], "pil": Image.fromarray(rgb_arrays[0])}[single]
    decaf = tiny().fit(image_files)
    with pytest.raises(ValueError, match=r"\[X\]"):
        decaf.transform(item)
    assert decaf.transform([item]).shape == (1, decaf.n_features_out_)


def test_extreme_aspect_ratio_has_bounded_memory(tmp_path):
    """A 10000x1 PNG used to be resized to 2,560,000 x 256 pixels first (2.5 GB)."""
    path = tmp_path / "strip.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1, 10000, 3), dtype=np.uint8)).save(path)
    code = (
        "import resource, sys; from sk_decaf import DeCAFTransformer;"
        f"d = DeCAFTransformer({TINY!r}, weights='random', engine='torch', decode='exact').fit([sys.argv[1]]);"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "X = d.transform([sys.argv[1]]); assert X.shape[0] == 1;"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip().splitlines()[-1]) < 200  # MiB of growth while transforming
