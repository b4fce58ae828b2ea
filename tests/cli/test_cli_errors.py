"""How ``sk-decaf extract`` fails: one line on stderr, a non-zero status, no output that looks valid; and
``--on-error nan``, which records the failures in the output instead."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sk_decaf import DeCAFTransformer
from sk_decaf.cli import main
from sk_decaf.datasets import load_image_folder
from sk_decaf.parallel import load_shards
from tests.conftest import TINY

NET = ["--backbone", TINY, "--weights", "random", "--engine", "torch"]


@pytest.fixture
def folder(tmp_path, demo):
    """3 classes x 5 demo images; the second image of the second class (index 6) is truncated."""
    root = tmp_path / "data"
    for c in range(3):
        (root / demo.target_names[c]).mkdir(parents=True)
        for path in [p for p, t in zip(demo.paths, demo.target) if t == c][:5]:
            shutil.copy(path, root / demo.target_names[c])
    bad = load_image_folder(root).paths[6]
    with open(bad, "r+b") as f:
        f.truncate(300)
    return root, bad


@pytest.mark.parametrize("sharded", [False, True])
def test_bad_image_one_line_no_traceback_no_valid_output(folder, tmp_path, sharded):
    root, bad = folder
    out = tmp_path / ("shards" if sharded else "features.npz")
    argv = ["extract", str(root), "-o", str(out), *NET, *(["--shard-size", "4"] if sharded else [])]
    done = subprocess.run([sys.executable, "-m", "sk_decaf", *argv], capture_output=True, text=True)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sk-decaf extract: error: image 6 (") and repr(bad) in lines[0]
    assert "Traceback" not in done.stderr
    if sharded:  # shard 0 (images 0-3) was written; the folder says it is unfinished
        with pytest.raises(ValueError, match=r"unfinished extraction \(1 of 4 shards\)"):
            load_shards(out)
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob("*.npz"))


def test_unwritable_output_is_one_line(tmp_path, demo, capsys):
    root = tmp_path / "data" / "one_class"
    root.mkdir(parents=True)
    shutil.copy(demo.paths[0], root)
    (tmp_path / "taken.npz").mkdir()  # a folder where the file should go
    assert main(["extract", str(root.parent), "-o", str(tmp_path / "taken.npz"), *NET]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sk-decaf extract: error:") and "taken.npz" in err and err.count("\n") == 1
    assert list((tmp_path / "taken.npz").iterdir()) == []


def test_sharded_output_options_are_checked(tmp_path, capsys, demo):
    root = tmp_path / "data" / "one_class"
    root.mkdir(parents=True)
    shutil.copy(demo.paths[0], root)
    assert main(["extract", str(root.parent), "-o", str(tmp_path / "f.npz"), "--shard-size", "2", *NET]) == 2
    assert "A sharded output is a folder; drop the .npz suffix" in capsys.readouterr().err
    assert main(["extract", str(root.parent), "-o", str(tmp_path / "f"), "--shard-size", "0", *NET]) == 2
    assert "--shard-size must be a positive number" in capsys.readouterr().err


def test_on_error_nan_records_failures_in_the_npz(folder, tmp_path, capsys):
    root, bad = folder
    out = tmp_path / "features.npz"
    assert main(["extract", str(root), "-o", str(out), "--on-error", "nan", *NET]) == 0
    assert f"1 of 15 images could not be featurised (NaN rows), listed in {out}" in capsys.readouterr().out
    with np.load(out) as npz:
        assert npz["failed_index"].tolist() == [6] and npz["failed_path"].tolist() == [bad]
        assert npz["failed_message"][0].startswith(f"image 6 ({bad!r})")
        features, paths = npz["features"], npz["paths"].tolist()
    assert np.isnan(features[6]).all()
    keep = np.arange(15) != 6
    good = [p for i, p in enumerate(paths) if i != 6]
    expected = DeCAFTransformer(TINY, weights="random", random_state=0, engine="torch").fit(good).transform(good)
    assert_allclose(features[keep], expected, rtol=1e-4, atol=1e-4)


def test_on_error_nan_records_failures_in_the_manifest(folder, tmp_path, capsys):
    root, bad = folder
    out = tmp_path / "shards"
    assert main(["extract", str(root), "-o", str(out), "--shard-size", "4", "--on-error", "nan", *NET]) == 0
    assert "1 of 15 images could not be featurised" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(f["index"], f["item"]) for f in manifest["failures"]] == [(6, bad)]
    data = load_shards(out)
    assert np.isnan(data.features[6]).all() and np.isfinite(np.delete(data.features, 6, axis=0)).all()
