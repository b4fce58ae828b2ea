"""``sk-decaf extract`` of a URL prefix (class folders listed with fsspec) or of a text file listing images."""

import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sk_decaf import DeCAFTransformer
from sk_decaf.cli import main
from sk_decaf.parallel import load_shards
from tests.conftest import TINY

fsspec = pytest.importorskip("fsspec")

NET = ["--backbone", TINY, "--weights", "random", "--engine", "torch"]


def _features(paths):
    return DeCAFTransformer(TINY, weights="random", random_state=0, engine="torch").fit(paths).transform(paths)


@pytest.fixture
def bucket(demo):
    """3 classes x 3 demo images under memory://<bucket>/photos/<class>/, with a non-image file and a hidden
    folder that the listing skips; the local paths in the listed order."""
    fs = fsspec.filesystem("memory")
    root = f"/bucket-{uuid.uuid4().hex[:8]}"
    local = []
    for c in range(3):
        for path in [p for p, t in zip(demo.paths, demo.target) if t == c][:3]:
            fs.pipe_file(f"{root}/photos/{demo.target_names[c]}/{Path(path).name}", Path(path).read_bytes())
            local.append(path)
    fs.pipe_file(f"{root}/photos/{demo.target_names[0]}/notes.txt", b"not an image")
    fs.pipe_file(f"{root}/photos/.cache/x.jpg", Path(local[0]).read_bytes())
    yield f"memory://{root}/photos", local
    fs.rm(root, recursive=True)


def test_extract_a_url_prefix_to_npz_and_to_shards(bucket, demo, tmp_path, capsys):
    prefix, local = bucket
    assert main(["extract", prefix, "-o", str(tmp_path / "f.npz"), *NET]) == 0
    assert "9 images x 256 features" in capsys.readouterr().out
    data = np.load(tmp_path / "f.npz")
    assert data["paths"].tolist() == [f"{prefix}/{'/'.join(Path(p).parts[-2:])}" for p in local]
    assert data["target"].tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert data["target_names"].tolist() == list(demo.target_names[:3])
    assert_allclose(data["features"], _features(local), rtol=1e-4, atol=1e-4)

    assert main(["extract", prefix, "-o", str(tmp_path / "shards"), "--shard-size", "4", *NET]) == 0
    shards = load_shards(tmp_path / "shards")
    assert shards.paths == data["paths"].tolist() and shards.target == data["target"].tolist()
    assert_allclose(shards.features, data["features"], rtol=1e-4, atol=1e-4)


def test_extract_a_listing_of_urls_and_paths(bucket, tmp_path, capsys):
    prefix, local = bucket
    urls = [f"{prefix}/{'/'.join(Path(p).parts[-2:])}" for p in local]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "here.jpg").write_bytes(Path(local[4]).read_bytes())
    missing = f"{prefix}/nowhere/missing.jpg"
    listing = tmp_path / "images.txt"
    rows = [f"{urls[0]}\tcat", f"{local[1]}\tdog", "", "# a comment", "sub/here.jpg\tcat", f"{missing}\tdog"]
    listing.write_text("\n".join(rows) + "\n")
    assert main(["extract", str(listing), "-o", str(tmp_path / "f.npz"), "--on-error", "nan", *NET]) == 0
    out = capsys.readouterr().out
    assert "4 images x 256 features" in out and "1 of 4 images could not be featurised" in out
    data = np.load(tmp_path / "f.npz")
    assert data["paths"].tolist() == [urls[0], local[1], str(tmp_path / "sub" / "here.jpg"), missing]
    assert data["target"].tolist() == [0, 1, 0, 1] and data["target_names"].tolist() == ["cat", "dog"]
    assert data["failed_index"].tolist() == [3] and data["failed_path"].tolist() == [missing]
    assert "file does not exist" in data["failed_message"][0]
    assert_allclose(data["features"][:3], _features([local[0], local[1], local[4]]), rtol=1e-4, atol=1e-4)
    assert np.isnan(data["features"][3]).all()

    # Without classes, a listing held in the bucket itself: target -1, no target names.
    fsspec.filesystem("memory").pipe_file(prefix.removeprefix("memory://") + "/list.txt", "\n".join(urls[:2]).encode())
    assert main(["extract", f"{prefix}/list.txt", "-o", str(tmp_path / "g.npz"), *NET]) == 0
    unlabelled = np.load(tmp_path / "g.npz")
    assert unlabelled["paths"].tolist() == urls[:2] and unlabelled["target"].tolist() == [-1, -1]
    assert unlabelled["target_names"].tolist() == []


@pytest.mark.parametrize(
    "content, message",
    [
        ("a.jpg\tcat\nb.jpg\n", r"image 1 \('.*b\.jpg'\) has no class, unlike the first one"),
        ("\n# nothing\n", "lists no images"),
        ("a.jpg\t\n", "line 1: a tab with no class after it"),
    ],
)
def test_a_bad_listing_is_refused_clearly(tmp_path, capsys, content, message):
    listing = tmp_path / "images.txt"
    listing.write_text(content)
    assert main(["extract", str(listing), "-o", str(tmp_path / "f.npz"), *NET]) != 0
    assert re.search(message, capsys.readouterr().err)
