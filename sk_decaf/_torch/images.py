"""Turn the many things a user calls "an image" into RGB PIL images, loudly.

Accepted items: a file path (``str`` or ``os.PathLike``), a PIL image, or a numpy array of shape
``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` (uint8, uint16, bool or float in [0, 1]). A whole
``(N, H, W[, C])`` array is a sequence of N images. Anything that cannot become an image raises
:class:`ImageLoadError` (a ``ValueError``) naming the item's index and, for files, its path: nothing
is dropped or reordered silently.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "as_image_sequence", "load_rgb", "describe", "content_key", "check_files"]


class ImageLoadError(ValueError):
    """An input item could not be turned into an image; the message names its index and path."""


def describe(item, index):
    """Short human description of item ``index`` for error messages."""
    if isinstance(item, (str, os.PathLike)):
        return f"image {index} ({os.fspath(item)!r})"
    if isinstance(item, np.ndarray):
        return f"image {index} (array of shape {item.shape}, dtype {item.dtype})"
    return f"image {index} ({type(item).__name__})"


def as_image_sequence(X):
    """Return ``X`` as an indexable sequence of image items, validating its container type.

    A single path or a single PIL image is rejected (scikit-learn expects a sequence of samples);
    a 4-D array or a 3-D array of grayscale images is split along its first axis.
    """
    if isinstance(X, (str, os.PathLike, Image.Image)):
        raise ValueError(
            "Expected a sequence of images (paths, PIL images or arrays), got a single "
            f"{type(X).__name__}. Wrap it in a list: [X]."
        )
    if isinstance(X, np.ndarray):
        if X.ndim == 4 or (X.ndim == 3 and X.dtype != object):
            return X  # (N, H, W, C) or (N, H, W): indexing yields one image
        if X.ndim == 1:
            return list(X)
        raise ValueError(
            f"An array of images must have shape (N, H, W) or (N, H, W, C); got {X.shape}."
        )
    if hasattr(X, "iloc") and hasattr(X, "ndim") and X.ndim == 1:  # pandas Series of paths
        return list(X)
    if not isinstance(X, Sequence) and not hasattr(X, "__getitem__"):
        try:
            return list(X)
        except TypeError:
            raise ValueError(
                f"Expected a sequence of images, got {type(X).__name__}."
            ) from None
    return X


def check_files(items):
    """Fail fast, before any computation, on paths that are missing, not files, or empty.

    Only lists and tuples are scanned: lazy sequences (crops decoded on access) are checked as they load.
    """
    if not isinstance(items, (list, tuple)):
        return
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            path = os.fspath(item)
            if not os.path.exists(path):
                raise ImageLoadError(f"{describe(item, i)}: file does not exist.")
            if not os.path.isfile(path):
                raise ImageLoadError(f"{describe(item, i)}: not a regular file.")
            if os.path.getsize(path) == 0:
                raise ImageLoadError(f"{describe(item, i)}: file is empty.")
        elif not isinstance(item, (Image.Image, np.ndarray)):
            raise ImageLoadError(
                f"{describe(item, i)}: unsupported item type; expected a file path, "
                "a PIL image or a numpy array."
            )


def _array_to_pil(arr):
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.size == 0:
        raise ValueError("array is empty")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ValueError("float arrays must be finite with values in [0, 1]")
        arr = np.round(arr * 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"unsupported dtype {arr.dtype}; use uint8, uint16, bool or float in [0, 1]")
    return Image.fromarray(np.ascontiguousarray(arr))


def _to_rgb(img):
    """Convert any PIL mode to RGB: palette, grayscale, 16-bit, CMYK and alpha modes included."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits by the type's range, not by clipping.
        arr = np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
        shift = 8 if img.mode != "I" or arr.max(initial=0) < 65536 else 24
        img = Image.fromarray((arr >> shift).astype(np.uint8))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Composite on white so transparent pixels do not become black noise.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(item, index=0):
    """Load one item as an RGB PIL image with EXIF orientation applied.

    Raises
    ------
    ImageLoadError
        If the item is missing, empty, corrupt, truncated or not an image.
    """
    try:
        if isinstance(item, (str, os.PathLike)):
            with Image.open(os.fspath(item)) as img:
                img.load()  # decode now, inside the try: truncated files fail here
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
        if isinstance(item, Image.Image):
            item.load()
            return _to_rgb(ImageOps.exif_transpose(item))
        if isinstance(item, np.ndarray):
            return _to_rgb(_array_to_pil(item))
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(f"{describe(item, index)}: file does not exist.") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{describe(item, index)}: not an image file (cannot identify format).") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"{describe(item, index)}: cannot decode: {exc}") from None
    raise ImageLoadError(
        f"{describe(item, index)}: unsupported item type; expected a file path, a PIL image or a numpy array."
    )


@functools.lru_cache(maxsize=200_000)
def _file_digest(path, size, mtime_ns, inode):
    h = hashlib.blake2b(digest_size=20)
    h.update(b"file\0")
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_key(item):
    """Digest of an item's content: the file's bytes, or the pixels with their shape and mode.

    Two copies of the same file at different paths share a key; editing a file changes it. File digests
    are remembered per process by (path, size, modification time, inode), so the folds of a
    cross-validation do not re-read every file.
    """
    if isinstance(item, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(item))
        st = os.stat(path)
        return _file_digest(path, st.st_size, st.st_mtime_ns, st.st_ino)
    h = hashlib.blake2b(digest_size=20)
    if isinstance(item, Image.Image):
        h.update(f"pil\0{item.mode}\0{item.size}\0".encode())
        h.update(item.tobytes())
    elif isinstance(item, np.ndarray):
        h.update(f"array\0{item.dtype.str}\0{item.shape}\0".encode())
        h.update(np.ascontiguousarray(item).tobytes())
    else:
        raise ImageLoadError(f"cannot use a {type(item).__name__} as an image.")
    return h.hexdigest()
