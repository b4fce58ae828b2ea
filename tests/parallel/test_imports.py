"""Dask is optional: the package, sk_decaf.parallel and the command line import without it."""

import subprocess
import sys


def test_import_sk_decaf_does_not_import_dask():
    code = (
        "import sys, sk_decaf, sk_decaf.parallel, sk_decaf.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'dask_ml'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_local_shards_work_without_dask(tmp_path, demo):
    """A sharded extraction in this process, with dask made unimportable."""
    code = (
        "import sys; sys.modules.update(dask=None, distributed=None, dask_ml=None)\n"
        "from sk_decaf import DeCAFTransformer\n"
        "from sk_decaf.parallel import extract_shards, load_shards, transform_dask\n"
        f"paths = {demo.paths[:3]!r}\n"
        "est = DeCAFTransformer('test_efficientnet', weights='random', random_state=0, engine='torch')\n"
        f"print(extract_shards(est, paths, {str(tmp_path / 'out')!r}, shard_size=2).computed)\n"
        "try:\n"
        "    transform_dask(est, paths)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "[0, 1]",
        "sk_decaf.parallel needs Dask: pip install 'sk-decaf[dask]' (dask[array], distributed, dask-ml).",
    ]
