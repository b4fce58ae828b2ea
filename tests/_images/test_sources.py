"""Every source of an encoded image is read by the one reader: the same pixels, rules, errors and keys as a path.

Sources: a path, ``os.PathLike``, ``bytes``/``bytearray``/``memoryview``, a binary file object, a Hugging Face
image dict ``{"bytes", "path"}`` and fsspec URLs (``memory://`` and ``file://`` here: nothing leaves the machine).
"""

import hashlib
import io
import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sk_decaf import DeCAFTransformer
from sk_decaf._images import Crop, ImageLoadError, as_image_sequence, check_items, content_key, image_size, load_rgb
from tests.conftest import TINY, assert_features_close

fsspec = pytest.importorskip("fsspec")


def tiny(**kwargs):
    params = dict(backbone=TINY, layer="pre_logits", weights="random", random_state=0, engine="torch")
    params.update(kwargs)
    return DeCAFTransformer(**params)


@pytest.fixture
def memory_folder():
    """A fresh folder of fsspec's in-process memory file system, removed afterwards; and a list of the files
    a test opens, closed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/sk-decaf-test-{uuid.uuid4().hex[:8]}"
    files = []
    yield fs, root, files
    for f in files:
        f.close()
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 600x400 JPEG shown rotated (EXIF orientation 6): reduced decoding and orientation both apply."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:400, 0:600]
    arr = np.stack([xx * 255 // 599, yy * 255 // 399, (xx + 2 * yy) % 256], axis=-1) + rng.integers(
        0, 30, (400, 600, 3)
    )
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    img.save(path, exif=exif, quality=90)
    return str(path)


def _sources(path, fs, root, files):
    """The same file as every kind of encoded item (``path`` itself first)."""
    data = Path(path).read_bytes()
    files.append(open(path, "rb"))  # noqa: SIM115 - closed by the memory_folder fixture
    name = f"{root}/{Path(path).name}"
    fs.pipe_file(name, data)
    return {
        "path": path,
        "pathlike": Path(path),
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "BytesIO": io.BytesIO(data),
        "open file": files[-1],
        "dict of bytes": {"bytes": data, "path": "renamed.jpg"},
        "dict of a path": {"bytes": None, "path": path},
        "dict of a URL": {"bytes": None, "path": f"memory://{name}"},
        "memory URL": f"memory://{name}",
        "file URL": Path(path).resolve().as_uri(),
    }


KINDS = [
    "path",
    "pathlike",
    "bytes",
    "bytearray",
    "memoryview",
    "BytesIO",
    "open file",
    "dict of bytes",
    "dict of a path",
    "dict of a URL",
    "memory URL",
    "file URL",
]


def _reference_digest(path):
    return hashlib.blake2b(b"file\0" + Path(path).read_bytes(), digest_size=20).hexdigest()


@pytest.mark.parametrize("kind", KINDS)
def test_every_source_reads_like_the_path(kind, photo, image_files, memory_folder):
    """Pixels, EXIF orientation, reduced JPEG decoding, header size, content key and crops, for every kind."""
    for path in (photo, image_files[1]):  # a rotated JPEG, a PNG
        item = _sources(path, *memory_folder)[kind]
        expected = load_rgb(path)
        np.testing.assert_array_equal(np.asarray(load_rgb(item, 4)), np.asarray(expected))
        assert image_size(item) == expected.size
        assert content_key(item) == content_key(path) == _reference_digest(path)
        crop = Crop(item, (10, 20, 30, 40))
        np.testing.assert_array_equal(np.asarray(load_rgb(crop)), np.asarray(load_rgb(Crop(path, (10, 20, 30, 40)))))
        assert content_key(crop) == content_key(Crop(path, (10, 20, 30, 40)))
    item = _sources(photo, *memory_folder)[kind]
    assert load_rgb(photo).size == (400, 600)  # displayed upright: the EXIF rotation swaps width and height
    reduced = load_rgb(item, draft=lambda w, h: (w // 4, h // 4))  # the JPEG decoder's 1/4 DCT scale
    assert reduced.size == (100, 150)
    np.testing.assert_array_equal(np.asarray(reduced), np.asarray(load_rgb(photo, draft=lambda w, h: (w // 4, h // 4))))


def test_file_objects_are_put_back_where_they_were(photo):
    data = Path(photo).read_bytes()
    for stream in (io.BytesIO(data), open(photo, "rb")):  # noqa: SIM115
        with stream:
            stream.seek(123)
            load_rgb(stream)
            content_key(stream)
            image_size(stream)
            check_items([stream])
            assert stream.tell() == 123 and not stream.closed


def test_url_digests_are_remembered_until_the_object_changes(memory_folder, image_files):
    fs, root, _ = memory_folder
    url = f"memory://{root}/a.jpg"
    fs.pipe_file(f"{root}/a.jpg", Path(image_files[0]).read_bytes())
    first = content_key(url)
    opened = []
    real_open = type(fs).open
    type(fs).open = lambda self, *args, **kwargs: opened.append(args) or real_open(self, *args, **kwargs)
    try:
        assert content_key(url) == first and opened == []  # the fold after: info only, no read
        fs.pipe_file(f"{root}/a.jpg", Path(image_files[2]).read_bytes())  # rewritten: a new version
        assert content_key(url) == _reference_digest(image_files[2]) != first
        assert [args for args in opened if "rb" in args] == [(f"{root}/a.jpg", "rb")]  # read once
    finally:
        type(fs).open = real_open


def _bad_items(fs, root, good):
    data = Path(good).read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    unseekable = io.BufferedReader(io.BytesIO(data))
    unseekable.seekable = lambda: False
    closed = io.BytesIO(data)
    closed.close()
    return {
        "empty bytes": (b"", r"\(0 bytes\): no data"),
        "noise": (noise, r"\(50000 bytes starting b'.*'\): not an image file"),
        "truncated": (data[: len(data) // 3], r"bytes of JPEG data\): (cannot decode|.*truncated)"),
        "text stream": (io.StringIO("not an image"), r"StringIO file object\): a text stream: open the file in binary"),
        "unseekable": (unseekable, r"cannot seek: pass its bytes"),
        "closed": (closed, r"closed"),
        "empty dict": ({"bytes": None, "path": None}, r"\(image dict\): .*'bytes' and 'path' are both missing"),
        "dict of text": ({"bytes": "abc"}, r"'bytes' is a str, not bytes"),
        "missing URL": (f"memory://{root}/missing.jpg", rf"\('memory://{root}/missing.jpg'\): file does not exist"),
        "unknown protocol": ("nosuchprotocol://bucket/a.jpg", r"unknown URL protocol 'nosuchprotocol'"),
        "directory URL": (f"memory://{root}", r"not a regular file|does not exist"),
        "other mapping": ({"pixels": 1}, r"unsupported item type dict"),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "empty bytes",
        "noise",
        "truncated",
        "text stream",
        "unseekable",
        "closed",
        "empty dict",
        "dict of text",
        "missing URL",
        "unknown protocol",
        "directory URL",
        "other mapping",
    ],
)
def test_a_bad_item_names_its_index_and_a_short_description(kind, memory_folder, image_files):
    fs, root, _ = memory_folder
    fs.pipe_file(f"{root}/good.jpg", Path(image_files[0]).read_bytes())
    item, message = _bad_items(fs, root, image_files[0])[kind]
    with pytest.raises(ImageLoadError, match=message) as info:
        load_rgb(item, 7)
    assert isinstance(info.value, ValueError) and str(info.value).startswith("image 7 (")
    assert len(str(info.value)) < 300  # a description, never the item's content
    if kind not in ("truncated", "noise", "missing URL", "directory URL"):  # found without decoding
        errors = {}
        check_items([image_files[0], item], errors)
        assert list(errors) == [1] and errors[1].startswith("image 1 (")


@pytest.mark.parametrize("wrap", [bytes, io.BytesIO])
@pytest.mark.parametrize("n_jobs", [1, 2])  # 2: decoded by two DataLoader worker processes
def test_bad_bytes_in_a_transform_raise_or_give_a_nan_row(image_files, n_jobs, wrap):
    data = [Path(p).read_bytes() for p in image_files] * 4
    data[5] = data[5][:100]  # a truncated JPEG
    data = [wrap(d) for d in data]
    est = tiny(batch_size=4, n_jobs=n_jobs).fit(data)
    with pytest.raises(ValueError, match=r"^image 5 \((BytesIO of )?100 bytes of JPEG data\): ") as info:
        est.transform(data)
    assert isinstance(info.value, ImageLoadError)
    with pytest.warns(UserWarning, match="1 of 20 images could not be read"):
        X = est.set_params(on_error="nan").transform(data)
    assert np.isnan(X[5]).all() and not np.isnan(np.delete(X, 5, axis=0)).any()
    assert_features_close(X[:5], tiny().fit(image_files).transform(image_files))


def test_urls_without_fsspec_name_the_extra(monkeypatch, image_files):
    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec now raises ImportError
    from sk_decaf._images import _sources

    _sources._checked_protocol.cache_clear()
    with pytest.raises(ImportError, match=r'pip install "sk-decaf\[fsspec\]"'):
        load_rgb("s3://bucket/a.jpg")
    with pytest.raises(ImportError, match=r"sk-decaf\[fsspec\]"):  # before any computation, whatever on_error
        tiny(on_error="nan").fit(image_files).transform([image_files[0], "s3://bucket/a.jpg"])
    _sources._checked_protocol.cache_clear()


def test_a_single_encoded_item_is_not_a_sequence(image_files):
    data = Path(image_files[0]).read_bytes()
    for single in (data, io.BytesIO(data), {"bytes": data, "path": None}, "memory://bucket/a.jpg"):
        with pytest.raises(ValueError, match=r"got a single .*Wrap it in a list"):
            as_image_sequence(single)


def test_fixed_width_bytes_arrays_are_refused(image_files):
    data = [Path(p).read_bytes() for p in image_files]
    assert np.asarray(data).dtype.kind == "S"  # what np.asarray makes of a list of bytes
    for X in (np.asarray(data), np.asarray(data)[:, None]):
        with pytest.raises(ValueError, match="fixed-width bytes .* trailing zero"):
            as_image_sequence(X)
    assert len(as_image_sequence(np.asarray(data, dtype=object))) == len(data)


def test_features_and_cache_entries_are_shared_by_every_source(image_files, memory_folder, tmp_path):
    """The same image from every source: the same features, and the cache entries of its path."""
    fs, root, files = memory_folder
    cache = tmp_path / "activations.sqlite"
    est = tiny(cache=cache).fit(image_files)
    expected = est.transform(image_files)  # fills the cache from the paths
    assert est.cache_info()["computed"] == len(image_files)
    for kind in KINDS[1:]:
        items = [_sources(p, fs, root, files)[kind] for p in image_files]
        assert_features_close(est.transform(items), expected)
        assert_features_close(tiny().fit(items).transform(items), expected)  # computed, not from the cache
    assert est.cache_info()["computed"] == len(image_files)  # every later source hit the path's entries


def test_a_directory_path_in_a_dict_is_not_an_image(tmp_path):
    with pytest.raises(ImageLoadError, match=r"image 0 \(image dict: path '.*'\): not a regular file"):
        load_rgb({"bytes": None, "path": os.fspath(tmp_path)})
