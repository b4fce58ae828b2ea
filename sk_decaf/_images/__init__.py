"""The one image reader: every path that opens an image goes through here.

It turns what a user calls "an image" into an RGB PIL image with one set of rules, and fails loudly:

* **Items.** An encoded image file from wherever it is kept (:mod:`._sources`): a file path (``str`` or
  ``os.PathLike``), a URL of any protocol fsspec knows (``s3://``, ``gs://``, ``https://``, ``memory://``,
  ``zip://...::...``; fsspec is the ``sk-decaf[fsspec]`` extra), the file's bytes (``bytes``, ``bytearray``,
  ``memoryview``), a binary file object, or a Hugging Face image dict ``{"bytes": ..., "path": ...}``.
  Or decoded pixels: a PIL image, a numpy array of shape ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` (uint8,
  uint16, bool or float in [0, 1]). Or a :class:`Crop` (a box of another item, what
  :class:`~sk_decaf.datasets.CroppedImages` yields). A whole ``(N, H, W[, C])`` array is a sequence of N
  images; a one-column table (a pandas ``DataFrame``, an ``(N, 1)`` array) is the column it holds.
* **Rules.** EXIF orientation is applied; palette, grey, 16-bit, CMYK and alpha modes become RGB (alpha
  composited on white, 16-bit scaled by its range); a JPEG is decoded at the smallest DCT scale the caller
  needs (``draft``), whatever its source.
* **Errors.** Anything that cannot become an image raises :class:`ImageLoadError`, a ``ValueError`` that
  names the item's index and a short description of it (its path or URL; for bytes, their size and format,
  never their content): nothing is dropped or reordered silently. A URL without fsspec installed raises an
  ``ImportError`` naming the extra.
* **Keys.** :func:`content_key` is a digest of an item's content (an image file's bytes, the same from a
  path, a URL, bytes or a file object; an array's or PIL image's pixels), the key of the activation cache.

The module imports neither torch nor scikit-learn. The deploy runtime (``sk_decaf/deploy/runtime.py``) keeps
its own copy of the decoding rules on purpose, so that it runs without sk_decaf; a parity test guards it.
"""

from ._decode import ImageLoadError, image_size, load_rgb
from ._items import (
    Crop,
    DraftSize,
    ImageItem,
    ImageItems,
    Images,
    as_image_sequence,
    check_items,
    content_key,
    describe,
)
from ._sources import FSSPEC_EXTRA, filesystem, is_url

__all__ = [
    "Crop",
    "DraftSize",
    "ImageItem",
    "ImageItems",
    "Images",
    "ImageLoadError",
    "as_image_sequence",
    "check_items",
    "content_key",
    "describe",
    "filesystem",
    "is_url",
    "FSSPEC_EXTRA",
    "image_size",
    "load_rgb",
]
