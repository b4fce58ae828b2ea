"""Where a transform writes its rows: memory, or a ``.npy`` file that appears only when it is complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import numpy as np

__all__ = ["output_array"]


@contextlib.contextmanager
def output_array(shape: tuple[int, ...], out: str | os.PathLike[str] | None = None) -> Iterator[np.ndarray]:
    """Yield a float32 array of ``shape``: in memory, or a memory-mapped ``out`` file.

    The file is written under a temporary name in the same folder and renamed to ``out`` only when the
    block finishes without an exception, so a failed transform never leaves a file that looks valid (an
    earlier file at ``out`` is left as it was). The yielded memmap stays valid after the rename.
    """
    if out is None:
        yield np.empty(shape, dtype=np.float32)
        return
    out = os.fspath(out)
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(out) + ".", suffix=".partial", dir=folder)
    os.close(fd)
    try:
        result = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        yield result
        result.flush()
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
