"""Decode an item into an RGB PIL image: EXIF orientation, every PIL mode, reduced JPEG decoding, crops.

Every encoded source (a path, a URL, bytes, a file object, an image dict: see :mod:`._sources`) is decoded by
the same code, so the rules (EXIF, modes, reduced decoding, errors) are the same for all of them.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageOps

from . import _sources
from ._items import Crop, DraftSize, ImageItem, ImageLoadError, describe, naming_errors, unsupported

__all__ = ["ImageLoadError", "load_rgb", "image_size"]

#: EXIF orientations that swap width and height.
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
_ORIENTATION_TAG = 0x0112


def _array_to_pil(arr: np.ndarray) -> Image.Image:
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


def _to_rgb(img: Image.Image) -> Image.Image:
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


def _transposed(img: Image.Image) -> bool:
    return img.getexif().get(_ORIENTATION_TAG) in _TRANSPOSED_ORIENTATIONS


def _displayed_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of an opened image as displayed, after its EXIF orientation."""
    width, height = img.size
    return (height, width) if _transposed(img) else (width, height)


def _draft(img: Image.Image, need: tuple[int, int] | None) -> None:
    """Ask a JPEG decoder for the smallest DCT-scaled size at least ``need`` (displayed ``(w, h)``)."""
    if need is None or img.format != "JPEG":
        return
    width, height = need
    img.draft(None, (height, width) if _transposed(img) else (width, height))


def _crop_need(crop: Crop, displayed: tuple[int, int], draft: DraftSize | None) -> tuple[int, int] | None:
    """The displayed size of the whole image that still gives the crop the size ``draft`` asks for."""
    _, _, box_w, box_h = crop.box
    if draft is None or box_w < 1 or box_h < 1:
        return None
    need = draft(int(round(box_w)), int(round(box_h)))
    if need is None:
        return None
    scale = max(need[0] / box_w, need[1] / box_h)
    if scale >= 1:
        return None
    return math.ceil(displayed[0] * scale), math.ceil(displayed[1] * scale)


def _open_rgb(
    item: object, draft: DraftSize | None = None, crop: Crop | None = None
) -> tuple[Image.Image, tuple[int, int]] | None:
    """Decode an item (not a crop) as RGB, with its displayed size; ``None`` for an item of no accepted kind.

    ``crop`` is the :class:`Crop` the item is the source of, if any.
    """
    if _sources.is_encoded(item):
        with _sources.opened(item) as source, Image.open(source) as img:
            displayed = _displayed_size(img)
            _draft(img, _crop_need(crop, displayed, draft) if crop is not None else _need(displayed, draft))
            img.load()  # decode now, inside the try: truncated files fail here
            return _to_rgb(ImageOps.exif_transpose(img)), displayed
    if isinstance(item, Image.Image):
        item.load()
        img = _to_rgb(ImageOps.exif_transpose(item))
        return img, img.size
    if isinstance(item, np.ndarray):
        img = _to_rgb(_array_to_pil(item))
        return img, img.size
    return None


def _need(displayed: tuple[int, int], draft: DraftSize | None) -> tuple[int, int] | None:
    return None if draft is None else draft(*displayed)


def _load(item: ImageItem, index: int, draft: DraftSize | None) -> Image.Image:
    if isinstance(item, Crop):
        opened = _open_rgb(item.source, draft, crop=item)
        if opened is None:
            raise unsupported(item, index)
        img, displayed = opened
        box = item.pixel_box(img.width / displayed[0], img.height / displayed[1])
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ImageLoadError(f"{describe(item, index)}: the crop box is empty.")
        return img.crop(box)
    opened = _open_rgb(item, draft)
    if opened is None:
        raise unsupported(item, index)
    return opened[0]


def load_rgb(item: ImageItem, index: int = 0, draft: DraftSize | None = None) -> Image.Image:
    """Load one item as an RGB PIL image with EXIF orientation applied.

    Parameters
    ----------
    item : path, URL, bytes, file object, image dict, PIL image, array or Crop
        See :data:`ImageItem`. A file object is read from its start and put back at its position.
    index : int
        Position of the item, for error messages.
    draft : callable, default=None
        ``draft(width, height) -> (w, h) or None``: the smallest size the caller needs of an image displayed
        at ``width x height``; a JPEG (from any encoded source) is then decoded at a reduced DCT scale no
        smaller than that (``Image.draft``). For a crop, the size is asked for the crop's box.

    Raises
    ------
    ImageLoadError
        If the item is missing, empty, corrupt, truncated or not an image.
    ImportError
        For a URL, when fsspec or the package of its protocol is not installed.
    """
    with naming_errors(item, index, "cannot decode"):
        return _load(item, index, draft)


def image_size(item: ImageItem, index: int = 0) -> tuple[int, int]:
    """``(width, height)`` of an item as displayed (EXIF orientation applied), reading only a file's header.

    Raises
    ------
    ImageLoadError
        Naming ``index`` and the item, if it cannot be read.
    ImportError
        For a URL, when fsspec or the package of its protocol is not installed.
    """
    with naming_errors(item, index):
        if isinstance(item, Crop):
            left, top, right, bottom = item.pixel_box()
            return right - left, bottom - top
        if _sources.is_encoded(item):
            with _sources.header(item) as source, Image.open(source) as img:
                return _displayed_size(img)
        if isinstance(item, Image.Image):
            return _displayed_size(item)
        if isinstance(item, np.ndarray) and item.ndim in (2, 3):
            return int(item.shape[1]), int(item.shape[0])
    raise unsupported(item, index)
