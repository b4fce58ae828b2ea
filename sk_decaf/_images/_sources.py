"""Where an encoded image comes from: a local file, a URL, bytes, a binary file object, a Hugging Face image dict.

Each of these holds the bytes of an image file. This module turns any of them into what ``Image.open`` reads
(:func:`opened`, :func:`header`), into the digest of those bytes (:func:`digest`: the same for the same file
from every source, the activation cache's key), into a short description for error messages (:func:`what`)
and into a problem found without decoding (:func:`problem`). It knows nothing of indices or decoding: the
reader (``_items``, ``_decode``) adds those.

* **Local paths** (``str`` or ``os.PathLike``) are opened by Pillow itself, as before; their digests are
  remembered per process by (path, size, modification time, inode).
* **URLs** (``s3://``, ``gs://``, ``https://``, ``memory://``, ``file://``, chained ``zip://x.jpg::s3://...``:
  any protocol that fsspec knows) are read with fsspec, an optional dependency
  (``pip install "sk-decaf[fsspec]"``). A decoded image is fetched whole (one request); its size is read from
  the header only. Digests are remembered by URL, size and the storage's version (ETag, modification time
  or creation time, as the file system reports it), so that the folds of a cross-validation do not read a
  remote file again; a storage that reports no version is read again every time.
* **Bytes** (``bytes``, ``bytearray``, ``memoryview``) are the encoded file, as Parquet, webdataset or LMDB
  stores hold images.
* **Binary file objects** are read from their start, as ``Image.open`` reads them, and put back at the
  position they had: the caller's position is unchanged afterwards. They must be seekable (the reader may read
  an item twice: its key, then its pixels); pass the bytes of a stream that cannot seek.
* **Hugging Face image dicts** ``{"bytes": ..., "path": ...}`` (an image column of ``datasets`` cast with
  ``Image(decode=False)``, or read from its Parquet files) are their bytes when present, else their path
  (a local path or a URL).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
from collections.abc import Iterator, Mapping
from typing import IO, Any, TypeAlias, TypeGuard

__all__ = [
    "FSSPEC_EXTRA",
    "BadSource",
    "Buffer",
    "Encoded",
    "is_url",
    "is_local_path",
    "is_encoded",
    "filesystem",
    "check_protocols",
    "opened",
    "header",
    "digest",
    "what",
    "problem",
]

#: The extra that installs fsspec.
FSSPEC_EXTRA = "sk-decaf[fsspec]"

#: Encoded bytes of an image file.
Buffer: TypeAlias = bytes | bytearray | memoryview
#: An item that holds an encoded image file: a path, a URL, bytes, a binary file object or an image dict.
Encoded: TypeAlias = "str | os.PathLike[str] | Buffer | IO[bytes] | Mapping[str, Any]"

#: ``protocol://`` or a chain ``protocol::...``; two letters at least, so that ``C://`` stays a Windows path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+(?:://|::)")

#: File signatures, for describing bytes without decoding them.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class BadSource(ValueError):
    """An encoded item that cannot be read; the message says why, in a few words."""


def is_url(item: object) -> TypeGuard[str]:
    """Whether ``item`` is a URL string (``protocol://...`` or an fsspec chain ``protocol::...``)."""
    return isinstance(item, str) and _URL.match(item) is not None


def is_local_path(item: object) -> TypeGuard[str | os.PathLike[str]]:
    """A ``str`` that is not a URL, or an ``os.PathLike``."""
    return isinstance(item, os.PathLike) or (isinstance(item, str) and not is_url(item))


def _is_buffer(item: object) -> TypeGuard[Buffer]:
    return isinstance(item, (bytes, bytearray, memoryview))


def _is_stream(item: object) -> bool:
    return not isinstance(item, (str, bytes, bytearray, memoryview)) and callable(getattr(item, "read", None))


def _is_image_dict(item: object) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(item, Mapping) and ("bytes" in item or "path" in item)


def is_encoded(item: object) -> TypeGuard[Encoded]:
    """Whether ``item`` is one of the encoded kinds this module reads."""
    return isinstance(item, (str, os.PathLike)) or _is_buffer(item) or _is_stream(item) or _is_image_dict(item)


def _resolve(item: object) -> Any:
    """An image dict's bytes (else its path); a path-like as ``str``; anything else as it is."""
    if _is_image_dict(item):
        data, path = item.get("bytes"), item.get("path")
        if data is not None:
            if not _is_buffer(data):
                raise BadSource(f"the dict's 'bytes' is a {type(data).__name__}, not bytes.")
            return data
        if path is not None:
            if not isinstance(path, (str, os.PathLike)):
                raise BadSource(f"the dict's 'path' is a {type(path).__name__}, not a path.")
            return os.fspath(path)
        raise BadSource("an image dict whose 'bytes' and 'path' are both missing or None.")
    if isinstance(item, os.PathLike):
        return os.fspath(item)
    return item


def _flat(data: Buffer) -> memoryview | bytes:
    """``data`` as a flat byte buffer, without copying where it already is one."""
    if isinstance(data, bytes):
        return data
    view = memoryview(data)
    return view.cast("B") if view.c_contiguous else view.tobytes()


# -- URLs ----------------------------------------------------------------------------------------------------
def _fsspec() -> Any:
    try:
        import fsspec
        import fsspec.core
    except ImportError:
        raise ImportError(
            f'Reading images from URLs needs fsspec: pip install "{FSSPEC_EXTRA}" (and the package of the '
            "protocol, e.g. s3fs, gcsfs, adlfs; https needs aiohttp)."
        ) from None
    return fsspec


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec file system, path in it)`` of a URL.

    Raises
    ------
    ImportError
        Naming the extra when fsspec is not installed, or the package a protocol needs (``s3fs`` ...).
    ValueError
        For a protocol fsspec does not know.
    """
    return _fsspec().core.url_to_fs(url)


def _protocols(url: str) -> list[str]:
    """Every protocol of a URL, chained ones included (``zip://a.jpg::s3://b/c.zip`` -> zip, s3)."""
    parts = url.split("::")
    return [part.split("://", 1)[0] if "://" in part else part for part in parts if "://" in part or part]


@functools.lru_cache(maxsize=64)
def _checked_protocol(protocol: str) -> None:
    _fsspec().get_filesystem_class(protocol)


def check_protocols(url: str) -> None:
    """Fail fast on a URL that cannot be read here, without reading it.

    Raises
    ------
    ImportError
        When fsspec (or the protocol's package) is not installed: an environment problem, not the item's.
    BadSource
        For a protocol that fsspec does not know.
    """
    for protocol in _protocols(url):
        try:
            _checked_protocol(protocol)
        except ValueError:
            raise BadSource(f"unknown URL protocol {protocol!r} (fsspec knows none of that name).") from None


def _version(info: Mapping[str, Any]) -> str | None:
    """What changes when the object at a URL is rewritten, as the file system reports it; None if nothing."""
    for key in ("ETag", "etag", "md5Hash", "generation", "version_id", "mtime", "LastModified", "last_modified"):
        if info.get(key) is not None:
            return f"{key}={info[key]}"
    if info.get("ino") is not None and info.get("created") is not None:
        return f"created={info['created']},ino={info['ino']}"
    if info.get("created") is not None:
        return f"created={info['created']}"
    return None


def _read_digest(read: Any) -> str:
    r"""blake2b of ``b"file\0"`` and the chunks ``read(n)`` returns until it returns nothing."""
    h = hashlib.blake2b(digest_size=20)
    h.update(b"file\0")
    for chunk in iter(lambda: read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=200_000)
def _url_digest(url: str, size: int | None, version: str) -> str:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        return _read_digest(f.read)


def _url_key(url: str) -> str:
    fs, path = filesystem(url)
    info = fs.info(path)  # FileNotFoundError for a missing object
    if info.get("type") == "directory":
        raise IsADirectoryError(url)
    version = _version(info)
    if version is None:  # nothing tells a rewritten object from the old one: read it every time
        with fs.open(path, "rb") as f:
            return _read_digest(f.read)
    return _url_digest(url, info.get("size"), version)


# -- file objects --------------------------------------------------------------------------------------------
def _stream_problem(stream: Any) -> str | None:
    if getattr(stream, "closed", False):
        return "the file object is closed."
    mode = getattr(stream, "mode", "b")
    if isinstance(stream, io.TextIOBase) or (isinstance(mode, str) and "b" not in mode):
        return "a text stream: open the file in binary mode ('rb')."
    try:
        seekable = bool(stream.seekable()) if hasattr(stream, "seekable") else hasattr(stream, "seek")
    except Exception:
        seekable = False
    if not seekable:
        return "a file object that cannot seek: pass its bytes (f.read()), since the reader may read an item twice."
    return None


@contextlib.contextmanager
def _rewound(stream: Any) -> Iterator[IO[bytes]]:
    """``stream`` at its start, put back at its current position afterwards."""
    bad = _stream_problem(stream)
    if bad is not None:
        raise BadSource(bad)
    position = stream.tell()
    stream.seek(0)
    try:
        yield stream
    finally:
        stream.seek(position)


# -- what the reader uses ------------------------------------------------------------------------------------
@contextlib.contextmanager
def opened(item: Encoded) -> Iterator[str | IO[bytes]]:
    """What ``Image.open`` reads for an encoded item: a local path, or a binary stream at its start.

    A URL is fetched whole (one request); a file object is put back at its position afterwards.

    Raises
    ------
    BadSource
        For an item that cannot be read (an empty buffer, a text or unseekable stream, an image dict
        without bytes or path, an unknown protocol).
    ImportError
        For a URL, when fsspec or the protocol's package is missing.
    OSError
        From the file system (``FileNotFoundError`` ...).
    """
    source = _resolve(item)
    if isinstance(source, str):
        if is_url(source):
            check_protocols(source)
            fs, path = filesystem(source)
            yield io.BytesIO(fs.cat_file(path))
        else:
            yield source
    elif _is_buffer(source):
        if memoryview(source).nbytes == 0:
            raise BadSource("no data.")
        yield io.BytesIO(_flat(source))
    else:
        with _rewound(source) as stream:
            yield stream


@contextlib.contextmanager
def header(item: Encoded) -> Iterator[str | IO[bytes]]:
    """Like :func:`opened`, but a URL is opened lazily: reading the header does not fetch the whole file."""
    source = _resolve(item)
    if is_url(source):
        check_protocols(source)
        fs, path = filesystem(source)
        with fs.open(path, "rb") as f:
            yield f
    else:
        with opened(source) as f:
            yield f


@functools.lru_cache(maxsize=200_000)
def _file_digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    with open(path, "rb") as f:
        return _read_digest(f.read)


def digest(item: Encoded) -> str:
    r"""blake2b (20 bytes, hex) of ``b"file\0"`` and the image file's bytes: the same from every source.

    A local file's digest is remembered by (path, size, modification time, inode), a URL's by (URL, size,
    version); bytes and file objects are hashed every time (1 to 2 ms per megabyte).
    """
    source = _resolve(item)
    if isinstance(source, str):
        if is_url(source):
            check_protocols(source)
            return _url_key(source)
        path = os.path.abspath(source)
        st = os.stat(path)
        return _file_digest(path, st.st_size, st.st_mtime_ns, st.st_ino)
    if _is_buffer(source):
        h = hashlib.blake2b(digest_size=20)
        h.update(b"file\0")
        h.update(_flat(source))
        return h.hexdigest()
    with _rewound(source) as stream:
        return _read_digest(stream.read)


def _describe_bytes(data: Buffer) -> str:
    flat = _flat(data)
    n = len(flat)
    head = bytes(flat[:16])
    kind = next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "WebP"
    if kind is not None:
        return f"{n} bytes of {kind} data"
    return f"{n} bytes starting {head[:8]!r}" if n else "0 bytes"


def what(item: object) -> str | None:
    """A short description of an encoded item (its path or URL, its size and format); None for other kinds.

    Never the item's whole content.
    """
    if isinstance(item, (str, os.PathLike)):
        return repr(os.fspath(item))
    if _is_buffer(item):
        return _describe_bytes(item)
    if _is_image_dict(item):
        parts = []
        if isinstance(item.get("path"), (str, os.PathLike)):
            parts.append(f"path {os.fspath(item['path'])!r}")
        if _is_buffer(item.get("bytes")):
            parts.append(_describe_bytes(item["bytes"]))
        return "image dict" + (": " + ", ".join(parts) if parts else "")
    if _is_stream(item):
        name = getattr(item, "name", None)
        if isinstance(name, (str, os.PathLike)):
            return f"file object {os.fspath(name)!r}"
        if isinstance(item, io.BytesIO) and not item.closed:
            with item.getbuffer() as view:
                return f"BytesIO of {_describe_bytes(view)}"
        return f"{type(item).__name__} file object"
    return None


def problem(item: Encoded) -> str | None:
    """What is wrong with an encoded item, found without decoding it; None when nothing is.

    A local file's existence and size, a URL's protocol, an empty buffer, a text or unseekable stream.

    URLs are not fetched: a missing object is found when it is read.

    Raises
    ------
    ImportError
        For a URL, when fsspec or the protocol's package is missing.
    """
    try:
        source = _resolve(item)
        if is_url(source):
            check_protocols(source)
            return None
        if isinstance(source, str):
            if not os.path.exists(source):
                return "file does not exist."
            if not os.path.isfile(source):
                return "not a regular file."
            if os.path.getsize(source) == 0:
                return "file is empty."
            return None
        if _is_buffer(source):
            return None if memoryview(source).nbytes else "no data."
        return _stream_problem(source)
    except BadSource as exc:
        return str(exc)
