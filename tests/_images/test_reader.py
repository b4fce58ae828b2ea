"""Every kind of input becomes the right RGB image; every bad input fails loudly, naming the item."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sk_decaf import DeCAFTransformer
from sk_decaf._images import ImageLoadError, as_image_sequence, content_key, load_rgb
from tests.conftest import TINY, assert_features_close


def tiny(**kwargs):
    params = dict(backbone=TINY, layer="pre_logits", weights="random", random_state=0, engine="torch")
    params.update(kwargs)
    return DeCAFTransformer(**params)


# -- conversions ------------------------------------------------------------------------------------
def test_paths_pil_and_arrays_give_the_same_features(image_files, rgb_arrays):
    est = tiny().fit(image_files)
    from_paths = est.transform(image_files)
    from_pathlib = est.transform([Path(p) for p in image_files])
    from_pil = est.transform([Image.open(p) for p in image_files])
    assert_features_close(from_pathlib, from_paths)
    assert_features_close(from_pil, from_paths)
    png = [i for i, p in enumerate(image_files) if p.endswith(".png")]  # lossless: equal to the arrays
    from_arrays = est.transform([rgb_arrays[i] for i in png])
    assert_features_close(from_arrays, from_paths[png])


def test_one_4d_array_is_a_batch_of_images(rgb_arrays):
    stack = np.stack([rgb_arrays[2]] * 3)  # (3, 40, 40, 3)
    est = tiny().fit(stack)
    X = est.transform(stack)
    assert X.shape == (3, est.n_features_out_)
    assert_features_close(X[0], X[2])
    assert_features_close(est.transform([rgb_arrays[2]])[0], X[0])


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA", "1"])
def test_modes_become_rgb(mode, rgb_arrays):
    rgb = Image.fromarray(rgb_arrays[0])
    if mode == "I;16":
        img = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        expected = rgb.convert("L").convert("RGB")
    elif mode == "RGBA":
        img = rgb.convert("RGBA")  # opaque: compositing on white changes nothing
        expected = rgb
    else:
        img = rgb.convert(mode)
        expected = img.convert("RGB") if mode not in ("LA",) else rgb.convert("L").convert("RGB")
    out = load_rgb(img)
    assert out.mode == "RGB" and out.size == rgb.size
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def test_transparent_pixels_become_white():
    arr = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    out = np.asarray(load_rgb(arr))
    assert (out == 255).all()


@pytest.mark.parametrize(
    "arr, expected",
    [
        (np.full((5, 6), 7, dtype=np.uint8), 7),
        (np.full((5, 6, 3), 200, dtype=np.uint8), 200),
        (np.full((5, 6), 0x1234, dtype=np.uint16), 0x12),
        (np.full((5, 6, 3), 0.5, dtype=np.float32), 128),
        (np.ones((5, 6), dtype=bool), 255),
    ],
)
def test_array_conversions(arr, expected):
    out = np.asarray(load_rgb(arr))
    assert out.shape == (5, 6, 3) and (out == expected).all()


def test_exif_orientation_is_applied(tmp_path, rgb_arrays):
    arr = rgb_arrays[0]  # 48 x 64
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=100)
    out = load_rgb(str(path))
    assert out.size == (48, 64)  # width and height swapped by the orientation tag
    with Image.open(path) as raw:
        expected = raw.transpose(Image.Transpose.ROTATE_270).convert("RGB")
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def test_content_key_follows_content_not_path(tmp_path, image_files):
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(Path(image_files[0]).read_bytes())
    assert content_key(str(copy)) == content_key(image_files[0])
    assert content_key(image_files[0]) != content_key(image_files[2])
    arr = np.zeros((3, 3, 3), np.uint8)
    assert content_key(arr) != content_key(arr.reshape(3, 9, 1)[:, :, 0])


# -- bad inputs -------------------------------------------------------------------------------------
def _bad_files(folder, good):
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "corrupt.jpg").write_bytes(os.urandom(2000))
    (folder / "notes.txt").write_text("this is not an image\n" * 20)
    data = Path(good).read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    (folder / "broken.png").write_bytes(buf.getvalue()[:40])
    return {
        "missing": (str(folder / "missing.jpg"), "does not exist"),
        "empty": (str(folder / "empty.jpg"), "empty"),
        "corrupt": (str(folder / "corrupt.jpg"), "not an image|cannot"),
        "text": (str(folder / "notes.txt"), "not an image|cannot"),
        "truncated": (str(folder / "truncated.jpg"), "truncated|cannot decode"),
        "broken_png": (str(folder / "broken.png"), "cannot decode|truncated|not an image"),
    }


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("large") / "large.jpg"
    Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(path, quality=95)
    return str(path)


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt", "text", "truncated", "broken_png"])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_bad_file_names_its_index_and_path(kind, n_jobs, tmp_path, image_files, large_jpeg):
    bad, message = _bad_files(tmp_path, large_jpeg)[kind]
    items = image_files[:3] + [bad] + image_files * 8  # enough images for several batches and workers
    est = tiny(batch_size=4, n_jobs=n_jobs).fit(items)
    with pytest.raises(ValueError, match=message) as info:
        est.transform(items)
    assert isinstance(info.value, ImageLoadError)
    assert "image 3" in str(info.value) and bad in str(info.value)


@pytest.mark.parametrize(
    "item, message",
    [
        (12, "unsupported item type"),
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.full((4, 4), 2.0), r"\[0, 1\]"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_bad_items_name_their_index(item, message, image_files):
    est = tiny().fit(image_files)
    with pytest.raises(ValueError, match=message) as info:
        est.transform([image_files[0], item])
    assert "image 1" in str(info.value)


def test_a_single_path_is_not_a_sequence(image_files):
    with pytest.raises(ValueError, match="sequence"):
        as_image_sequence(image_files[0])
    with pytest.raises(ValueError, match="no images"):
        tiny().fit(image_files).transform([])


def test_nothing_is_dropped_or_reordered(image_files):
    est = tiny(batch_size=2).fit(image_files)
    X = est.transform(image_files + image_files[:2])
    assert X.shape[0] == len(image_files) + 2
    assert_features_close(X[-2:], X[:2])
