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

    A single image is rejected whatever its kind (a path, a PIL image, an ``(H, W, 3)`` or ``(H, W, 4)``
    array): scikit-learn expects a sequence of samples, and an ``(H, W, 3)`` array would otherwise read as
    ``H`` grayscale images. A 4-D array, or a 3-D array of grayscale images ``(N, H, W)``, is split along
    its first axis.
    """
    if isinstance(X, (str, os.PathLike, Image.Image)):
        raise ValueError(
            "Expected a sequence of images (paths, PIL images or arrays), got a single "
            f"{type(X).__name__}. Wrap it in a list: [X]."
        )
    if isinstance(X, np.ndarray):
        if X.ndim == 3 and X.dtype != object and X.shape[-1] in (3, 4):
            raise ValueError(
                f"Got one array of shape {X.shape}: a single (H, W, 3) or (H, W, 4) image is ambiguous with "
                f"{X.shape[0]} grayscale images of shape {X.shape[1:]}. Wrap one image in a list: [X]; pass "
                "several grayscale images as a list of (H, W) arrays or an (N, H, W, 1) array."
            )
        if X.ndim == 4 or (X.ndim == 3 and X.dtype != object):
            return X  # (N, H, W, C) or (N, H, W): indexing yields one image
        if X.ndim == 1:
            return list(X)
        raise ValueError(f"An array of images must have shape (N, H, W) or (N, H, W, C); got {X.shape}.")
    if hasattr(X, "iloc") and hasattr(X, "ndim") and X.ndim == 1:  # pandas Series of paths
        return list(X)
    if not isinstance(X, Sequence) and not hasattr(X, "__getitem__"):
        try:
            return list(X)
        except TypeError:
            raise ValueError(f"Expected a sequence of images, got {type(X).__name__}.") from None
    return X


def check_files(items, errors=None):
    """Fail fast, before any computation, on paths that are missing, not files, or empty.

    Only lists and tuples are scanned: lazy sequences (crops decoded on access) are checked as they load.
    With ``errors`` (a dict), bad items are recorded there as ``{index: message}`` instead of raising.
    """
    if not isinstance(items, (list, tuple)):
        return
    for i, item in enumerate(items):
        problem = None
        if isinstance(item, (str, os.PathLike)):
            path = os.fspath(item)
            if not os.path.exists(path):
                problem = "file does not exist."
            elif not os.path.isfile(path):
                problem = "not a regular file."
            elif os.path.getsize(path) == 0:
                problem = "file is empty."
        elif not isinstance(item, (Image.Image, np.ndarray)):
            problem = "unsupported item type; expected a file path, a PIL image or a numpy array."
        if problem is not None:
            message = f"{describe(item, i)}: {problem}"
            if errors is None:
                raise ImageLoadError(message)
            errors[i] = message


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


#: EXIF orientations that swap width and height.
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


def _draft(img, draft):
    """Ask a JPEG decoder for the smallest DCT-scaled size that is at least ``draft(width, height)``."""
    if draft is None or img.format != "JPEG":
        return
    width, height = img.size
    swap = img.getexif().get(0x0112) in _TRANSPOSED_ORIENTATIONS  # the size as displayed, after EXIF
    size = draft(height, width) if swap else draft(width, height)
    if size is not None:
        img.draft(None, tuple(size[::-1]) if swap else tuple(size))


def load_rgb(item, index=0, draft=None):
    """Load one item as an RGB PIL image with EXIF orientation applied.

    Parameters
    ----------
    item : path, PIL image or array
    index : int
        Position of the item, for error messages.
    draft : callable, default=None
        ``draft(width, height) -> (w, h) or None``: the smallest size the caller needs; a JPEG file is
        then decoded at a reduced DCT scale no smaller than that (``Image.draft``).

    Raises
    ------
    ImageLoadError
        If the item is missing, empty, corrupt, truncated or not an image.
    """
    try:
        if isinstance(item, (str, os.PathLike)):
            with Image.open(os.fspath(item)) as img:
                _draft(img, draft)
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
    except Exception as exc:  # OSError, ValueError, SyntaxError, DecompressionBombError, plugin bugs ...
        raise ImageLoadError(f"{describe(item, index)}: cannot decode: {type(exc).__name__}: {exc}") from None
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


def content_key(item, index=0):
    """Digest of an item's content: the file's bytes, or the pixels with their shape and mode.

    Two copies of the same file at different paths share a key; editing a file changes it. File digests
    are remembered per process by (path, size, modification time, inode), so the folds of a
    cross-validation do not re-read every file.

    Raises
    ------
    ImageLoadError
        Naming ``index`` and the item, whatever went wrong (unreadable file, unsupported item, a PIL image
        whose pixels cannot be read).
    """
    try:
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
            raise ImageLoadError(
                f"{describe(item, index)}: unsupported item type; expected a file path, a PIL image or a numpy array."
            )
    except ImageLoadError:
        raise
    except Exception as exc:
        raise ImageLoadError(f"{describe(item, index)}: cannot read: {type(exc).__name__}: {exc}") from None
    return h.hexdigest()
