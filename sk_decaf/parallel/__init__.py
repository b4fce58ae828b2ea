"""Scaling out: features on a Dask cluster, and resumable extraction into ``.npy`` shards.

* :func:`transform_dask` -- a lazy dask array of features, computed on the current ``distributed`` client;
  each worker loads the network once.
* :func:`extract_shards` / :func:`load_shards` -- a folder of ``.npy`` shards and a JSON manifest, written
  shard by shard, locally or on a cluster; a killed job resumes with the missing shards only.
* :func:`get_client` -- the current client, or one connected to a scheduler address.

Dask is optional (``pip install "sk-decaf[dask]"``) and imported only when a function needs it:
``import sk_decaf.parallel`` does not import it, and local sharded extraction never does.
"""

from ._dask import get_client, transform_dask
from ._shards import extract_shards, load_shards

__all__ = ["transform_dask", "extract_shards", "load_shards", "get_client"]
