"""What an image item is: the kinds the reader accepts, how they are named in errors, and their content keys."""

from __future__ import annotations

import abc
import contextlib
import hashlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeAlias, cast

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import _sources

__all__ = [
    "ImageLoadError",
    "Crop",
    "ImageItem",
    "ImageItems",
    "Images",
    "DraftSize",
    "describe",
    "as_image_sequence",
    "check_items",
    "content_key",
]

#: What the error messages say the reader accepts.
ACCEPTED = (
    "a file path or URL, encoded bytes, a binary file object, a {'bytes', 'path'} dict, a PIL image or a numpy array"
)


class ImageLoadError(ValueError):
    """An input item could not be turned into an image; the message names its index and the item."""


@dataclass(frozen=True)
class Crop:
    """A box of an image: ``(x, y, width, height)`` in pixels of the image as displayed (EXIF applied).

    The reader opens ``source`` (any item) with its usual rules, then crops the box; the content key is the
    source's key and the box, so a crop is cached without decoding it.
    """

    source: Any
    box: tuple

    def __post_init__(self) -> None:
        box = tuple(float(v) for v in np.asarray(self.box, dtype=float).ravel())
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise ValueError(f"A crop box is (x, y, width, height), four finite numbers; got {self.box!r}.")
        object.__setattr__(self, "box", box)

    def pixel_box(self, scale_x: float = 1.0, scale_y: float = 1.0) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` rounded to pixels, on an image scaled by ``scale_x, scale_y``."""
        x, y, w, h = self.box
        left, top, right, bottom = (
            int(round(v)) for v in (x * scale_x, y * scale_y, (x + w) * scale_x, (y + h) * scale_y)
        )
        return left, top, right, bottom


#: One image as the reader accepts it: a file path or URL, the encoded bytes of an image file, a binary file
#: object, a Hugging Face image dict ``{"bytes": ..., "path": ...}``, a PIL image, a numpy array ``(H, W)``,
#: ``(H, W, 3)`` or ``(H, W, 4)``, or a :class:`Crop` of one of these.
ImageItem: TypeAlias = (
    str
    | os.PathLike[str]
    | bytes
    | bytearray
    | memoryview
    | IO[bytes]
    | Mapping[str, Any]
    | Image.Image
    | np.ndarray
    | Crop
)

#: Several images, what a transformer's ``X`` is: a sequence (or other iterable) of :data:`ImageItem`, an
#: ``(N, H, W[, C])`` array, a one-column table of items (a pandas ``DataFrame`` or ``Series``, an ``(N, 1)``
#: array), or an :class:`ImageItems` (a lazy sequence such as ``CroppedImages``).
Images: TypeAlias = Iterable[ImageItem] | np.ndarray

#: ``draft(width, height) -> (w, h) or None``: the smallest size a caller needs of an image displayed at
#: ``width x height`` (see :func:`load_rgb`).
DraftSize: TypeAlias = Callable[[int, int], "tuple[int, int] | None"]


class ImageItems(Sequence[Any]):
    """Base of lazy image sequences: ``len`` and :meth:`item` give the reader's items.

    A subclass implements ``__len__``, ``item(i)`` and ``__getitem__`` (what users see, typically the decoded
    image ``load_rgb(self.item(i), i)``). Given as ``X``, its items are taken as they are (a :class:`Crop`, a
    path ...), so every transformer reads them with the reader's rules and errors, keys them without
    decoding, and ships only their names to worker processes.
    """

    @abc.abstractmethod
    def item(self, i: int) -> ImageItem:
        """The reader item of image ``i`` (a path, a :class:`Crop` ...)."""


def _what(item: object) -> str:
    encoded = _sources.what(item)
    if encoded is not None:
        return encoded
    if isinstance(item, Crop):
        return f"crop {tuple(round(v, 1) for v in item.box)} of {_what(item.source)}"
    if isinstance(item, np.ndarray):
        return f"array of shape {item.shape}, dtype {item.dtype}"
    if isinstance(item, Image.Image):
        return f"PIL image, mode {item.mode}, size {item.size[0]}x{item.size[1]}"
    return type(item).__name__


def describe(item: object, index: int) -> str:
    """``image <index> (<short description>)``, for error messages; never the item's whole content."""
    return f"image {index} ({_what(item)})"


def _one_column(X: Any) -> list[Any] | None:
    """The single column of a 2-D table of images (what ``ColumnTransformer`` passes for a list selector)."""
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"Expected one column of images, got a table with {X.shape[1]} columns {list(X.columns)[:5]}; "
                "select the image column (df['path'] or, in a ColumnTransformer, ['path'])."
            )
        return list(X.iloc[:, 0])
    return None


def as_image_sequence(X: Images) -> Sequence[Any] | np.ndarray:
    """Return ``X`` as an indexable sequence of image items, validating its container type.

    A single image is rejected whatever its kind (a path, bytes, a file object, an image dict, a PIL image,
    an ``(H, W, 3)`` or ``(H, W, 4)`` array): scikit-learn expects a sequence of samples, bytes would read as
    a sequence of integers, and an ``(H, W, 3)`` array as ``H`` grayscale images. A 4-D array, or a 3-D
    array of grayscale images ``(N, H, W)``, is split along its first axis. A one-column table (a
    ``DataFrame``, an ``(N, 1)`` array of items) is its column. Arrays of fixed-width bytes (dtype ``S``)
    are refused: numpy drops their trailing zero bytes.
    """
    if _sources.is_encoded(X) or isinstance(X, (Image.Image, Crop)):
        raise ValueError(
            f"Expected a sequence of images ({ACCEPTED}), got a single {type(X).__name__}. Wrap it in a list: [X]."
        )
    if isinstance(X, ImageItems):
        return [X.item(i) for i in range(len(X))]
    column = _one_column(X)
    if column is not None:
        return column
    if isinstance(X, np.ndarray):
        if X.dtype.kind in "SV" and X.ndim <= 2:
            raise ValueError(
                f"Got an array of fixed-width bytes (dtype {X.dtype}), in which numpy drops the trailing zero "
                "bytes of each item; pass encoded images as a list, an object array or a pandas column of bytes."
            )
        if X.ndim == 2 and X.shape[1] == 1 and (X.dtype == object or X.dtype.kind == "U"):
            return list(X[:, 0])  # a column vector of items
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
        raise ValueError(
            f"An array of images must have shape (N, H, W) or (N, H, W, C), or be a column of paths (N,) or "
            f"(N, 1); got shape {X.shape} and dtype {X.dtype}."
        )
    if hasattr(X, "iloc") and getattr(X, "ndim", None) == 1:  # pandas Series
        return list(X)
    if not isinstance(X, Sequence) and not hasattr(X, "__getitem__"):
        try:
            return list(X)
        except TypeError:
            raise ValueError(f"Expected a sequence of images, got {type(X).__name__}.") from None
    return cast(Sequence[Any], X)  # a sequence, or an object indexed like one


@contextlib.contextmanager
def naming_errors(item: object, index: int, action: str = "cannot read") -> Iterator[None]:
    """Turn whatever reading ``item`` raises into an :class:`ImageLoadError` naming ``index`` and the item.

    One home for the reader's error rules: a missing file, a folder, a bad source and an unidentified format
    each get their own message; anything else is ``"<action>: <type>: <message>"``. ``ImageLoadError`` and
    ``ImportError`` (an fsspec protocol's package missing) pass through.
    """
    try:
        yield
    except (ImageLoadError, ImportError):
        raise
    except _sources.BadSource as exc:
        raise ImageLoadError(f"{describe(item, index)}: {exc}") from None
    except FileNotFoundError:
        raise ImageLoadError(f"{describe(item, index)}: file does not exist.") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{describe(item, index)}: not a regular file.") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{describe(item, index)}: not an image file (cannot identify format).") from None
    except Exception as exc:  # OSError, ValueError, SyntaxError, DecompressionBombError, plugin bugs ...
        raise ImageLoadError(f"{describe(item, index)}: {action}: {type(exc).__name__}: {exc}") from None


def unsupported(item: object, index: int) -> ImageLoadError:
    """The :class:`ImageLoadError` of an item of no accepted kind."""
    return ImageLoadError(
        f"{describe(item, index)}: unsupported item type {type(item).__name__}; expected {ACCEPTED} "
        "(or a list of them)."
    )


def check_items(items: Sequence[Any] | np.ndarray, errors: dict[int, str] | None = None) -> None:
    """Fail fast, before any computation, on items that cannot be read, found without decoding them.

    Paths that are missing, not files or empty; empty bytes; text or unseekable file objects; image dicts
    without bytes or path; URLs of unknown protocols; items of no accepted kind. URLs are not fetched (a
    missing object is found when it is read). Only lists and tuples are scanned (other sequences, such as
    lazy crops decoded on access, are checked as they load). With ``errors`` (a dict), bad items are recorded
    there as ``{index: message}`` instead of raising.

    Raises
    ------
    ImageLoadError
        Naming the first bad item's index, unless ``errors`` is given.
    ImportError
        For a URL when fsspec, or the package of its protocol, is not installed (whatever ``errors``: it
        is the environment's problem, not the item's), naming the extra to install.
    """
    if not isinstance(items, (list, tuple)):
        return
    for i, item in enumerate(items):
        source = item.source if isinstance(item, Crop) else item
        if _sources.is_encoded(source):
            problem = _sources.problem(source)
            error = None if problem is None else ImageLoadError(f"{describe(item, i)}: {problem}")
        elif isinstance(source, (Image.Image, np.ndarray)):
            error = None
        else:
            error = unsupported(item, i)
        if error is not None:
            if errors is None:
                raise error
            errors[i] = str(error)


def _key(item: object, index: int) -> str:
    if _sources.is_encoded(item):
        return _sources.digest(item)
    h = hashlib.blake2b(digest_size=20)
    if isinstance(item, Crop):
        h.update(f"crop\0{item.box}\0".encode())
        h.update(_key(item.source, index).encode())
    elif isinstance(item, Image.Image):
        h.update(f"pil\0{item.mode}\0{item.size}\0".encode())
        h.update(item.tobytes())
    elif isinstance(item, np.ndarray):
        h.update(f"array\0{item.dtype.str}\0{item.shape}\0".encode())
        h.update(np.ascontiguousarray(item).tobytes())
    else:
        raise unsupported(item, index)
    return h.hexdigest()


def content_key(item: ImageItem, index: int = 0) -> str:
    """Digest of an item's content: the image file's bytes, or the pixels with their shape and mode.

    An image file has one key whatever it comes from: a path, a URL, its bytes, a file object or an image
    dict. Two copies of the same file share a key; editing a file changes it. File digests are remembered
    per process by (path, size, modification time, inode), URL digests by (URL, size, the storage's version
    tag), so the folds of a cross-validation do not read every file again. A :class:`Crop`'s key is its
    source's and its box.

    Raises
    ------
    ImageLoadError
        Naming ``index`` and the item, whatever went wrong (unreadable file, unsupported item, a PIL image
        whose pixels cannot be read).
    ImportError
        For a URL, when fsspec or the package of its protocol is not installed.
    """
    with naming_errors(item, index):
        return _key(item, index)
