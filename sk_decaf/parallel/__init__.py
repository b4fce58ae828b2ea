"""Scaling out: features on a Dask cluster, and resumable extraction into ``.npy`` shards.

* :func:`transform_dask` -- a lazy dask array of features, computed on the current ``distributed`` client;
  each worker loads the network once.
* :func:`extract_shards` / :func:`load_shards` -- a folder of ``.npy`` shards and a JSON manifest, written
  shard by shard, locally or on a cluster; a killed job resumes with the missing shards only.
* :func:`get_client` -- the current client, or one connected to a scheduler address;
* :func:`transform_block` -- what every task runs: the features of a block of images and a record of each bad
  one (``on_error="nan"``), numbered in the whole input; :data:`FAILURES_WARNING` matches the warning that
  lists bad items, to silence it where the records are reported instead.

Only the images' names (file paths, or URLs of any protocol fsspec knows: ``s3://``, ``gs://``, ``file://`` ...)
travel to the workers; each worker opens its own images.

Dask is optional (``pip install "sk-decaf[dask]"``) and imported only when a function needs it:
``import sk_decaf.parallel`` does not import it, and local sharded extraction never does.
"""

from ._dask import get_client, transform_dask
from ._shards import extract_shards, load_shards
from ._worker import FAILURES_WARNING, transform_block

__all__ = ["transform_dask", "extract_shards", "load_shards", "get_client", "transform_block", "FAILURES_WARNING"]
