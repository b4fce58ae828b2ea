"""``sk-decaf extract --shard-size/--resume``: a job killed with SIGKILL resumes with its missing shards only."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose
from PIL import Image

from sk_decaf.cli import main
from sk_decaf.parallel import load_shards
from tests.conftest import TINY

NET = ["--backbone", TINY, "--weights", "random", "--engine", "torch"]


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory):
    """40 photos of 900 x 1200 pixels in 3 classes: each takes a while to decode, so a job can be killed
    between two shards."""
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:900, 0:1200]
    for i in range(40):
        folder = root / f"class_{i % 3}"
        folder.mkdir(exist_ok=True)
        base = np.stack([(xx + 7 * i) % 256, (yy + 3 * i) % 256, (xx * yy // 97 + i) % 256], axis=-1)
        noise = rng.integers(0, 60, size=(900, 1200, 3))
        Image.fromarray((base + noise).clip(0, 255).astype(np.uint8)).save(folder / f"img_{i:02d}.jpg", quality=90)
    return root


def _shards(out):
    return sorted(p.name for p in out.glob("shard-*.npy")) if out.is_dir() else []


def test_killed_job_resumes_with_the_missing_shards_only(big_folder, tmp_path, capsys):
    out = tmp_path / "features"
    argv = ["extract", str(big_folder), "-o", str(out), "--shard-size", "4", "--batch-size", "2", *NET]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sk_decaf", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while len(_shards(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    present = _shards(out)
    assert 2 <= len(present) < 10
    with pytest.raises(ValueError, match="unfinished extraction"):
        load_shards(out)
    kept = {name: os.stat(out / name).st_mtime_ns for name in present}

    assert main([*argv, "--resume"]) == 0
    text = capsys.readouterr().out
    assert (
        f"40 images x 256 features in 10 shards: {10 - len(present)} computed locally, "
        f"{len(present)} already present" in text
    )
    assert {name: os.stat(out / name).st_mtime_ns for name in present} == kept  # not rewritten
    assert len(_shards(out)) == 10

    # The same features as an uninterrupted run.
    whole = tmp_path / "whole.npz"
    assert main(["extract", str(big_folder), "-o", str(whole), *NET]) == 0
    data = load_shards(out)
    with np.load(whole) as npz:
        assert data.paths == npz["paths"].tolist() and data.target == npz["target"].tolist()
        assert data.target_names == npz["target_names"].tolist()
        assert data.feature_names.tolist() == npz["feature_names"].tolist()
        assert_allclose(data.features, npz["features"], rtol=1e-4, atol=1e-4)


def test_resume_flag_alone_reuses_the_shard_size(big_folder, tmp_path, capsys):
    out = tmp_path / "features"
    small = ["extract", str(big_folder), "-o", str(out), "--layer", "-1", *NET]
    assert main([*small, "--shard-size", "15"]) == 0
    assert "40 images x 1000 features in 3 shards: 3 computed locally, 0 already present" in capsys.readouterr().out
    (out / "shard-000001.npy").unlink()
    assert main([*small, "--resume"]) == 0
    assert "in 3 shards: 1 computed locally, 2 already present" in capsys.readouterr().out
