"""Crops are read by the one reader: EXIF, reduced decoding, errors naming index and path, keys without decoding."""

import numpy as np
import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from sk_decaf import DeCAFTransformer
from sk_decaf._images import Crop, ImageLoadError, content_key, image_size, load_rgb
from sk_decaf.datasets import CroppedImages
from tests.conftest import TINY, assert_features_close


def tiny(**kwargs):
    params = dict(backbone=TINY, layer="pre_logits", weights="random", random_state=0, engine="torch")
    params.update(kwargs)
    return DeCAFTransformer(**params)


def _quadrants(width=120, height=80):
    """An image whose four quadrants have four distinct colours (top-left red, top-right green ...)."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = height // 2, width // 2
    arr[:h, :w] = (255, 0, 0)
    arr[:h, w:] = (0, 255, 0)
    arr[h:, :w] = (0, 0, 255)
    arr[h:, w:] = (255, 255, 0)
    return arr


@pytest.fixture
def crops_with_a_missing_file(tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(_quadrants()).save(path)
        paths.append(str(path))
    paths[2] = str(tmp_path / "gone.png")
    return CroppedImages(paths, [[0, 0, 60, 40]] * 4)


@pytest.mark.parametrize("cache", [False, True])
def test_a_missing_file_in_lazy_crops_names_index_and_path(crops_with_a_missing_file, tmp_path, cache):
    crops = crops_with_a_missing_file
    est = tiny(cache=str(tmp_path / "c.sqlite") if cache else None).fit(crops)
    with pytest.raises(ValueError, match=r"image 2 \(crop .*gone\.png.*\): file does not exist"):
        est.transform(crops)
    with pytest.raises(ImageLoadError, match=r"image 2 .*gone\.png"):
        crops[2]  # indexing reads through the same reader


@pytest.mark.parametrize("cache", [False, True])
def test_on_error_nan_applies_to_crops(crops_with_a_missing_file, tmp_path, cache):
    crops = crops_with_a_missing_file
    est = tiny(on_error="nan", cache=str(tmp_path / "c.sqlite") if cache else None).fit(crops)
    with pytest.warns(UserWarning, match=r"1 of 4 images could not be read.*\n.*image 2 .*gone\.png"):
        X = est.transform(crops)
    assert np.isnan(X[2]).all() and not np.isnan(X[[0, 1, 3]]).any()
    assert_features_close(X[0], tiny().fit(crops).transform([crops[0]])[0])


def test_crop_boxes_are_in_displayed_pixels_of_exif_rotated_files(tmp_path):
    # Stored 120x80 with orientation 6 (rotate 90 degrees clockwise to display): displayed 80x120.
    stored = Image.fromarray(_quadrants())
    exif = stored.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    shown = np.asarray(load_rgb(str(path)))
    assert shown.shape == (120, 80, 3) and image_size(str(path)) == (80, 120)
    box = (0, 0, 40, 60)  # top-left quadrant of the displayed image
    crop = np.asarray(load_rgb(Crop(str(path), box)))
    assert crop.shape == (60, 40, 3)
    np.testing.assert_allclose(crop.astype(float), shown[:60, :40].astype(float), atol=1)
    # Displayed top-left is the stored bottom-left (blue) after a clockwise rotation.
    assert np.abs(crop[20:40, 10:30].mean(axis=(0, 1)) - (0, 0, 255)).max() < 30


def test_crop_keys_need_no_decoding_and_follow_file_and_box(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.fromarray(_quadrants()).save(path)
    copy = tmp_path / "b.png"
    copy.write_bytes(path.read_bytes())
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("a content key decoded the image"))
    key = content_key(Crop(str(path), (0, 0, 10, 10)))
    assert key == content_key(Crop(str(copy), (0, 0, 10, 10)))  # the same bytes elsewhere: the same key
    assert key != content_key(Crop(str(path), (0, 0, 10, 11)))
    assert key != content_key(str(path))


def test_reduced_decoding_applies_to_crops_of_large_jpegs(tmp_path):
    rng = np.random.default_rng(0)
    big = np.clip(np.kron(_quadrants(480, 320), np.ones((4, 4, 1))) + rng.integers(0, 20, (1280, 1920, 3)), 0, 255)
    path = tmp_path / "big.jpg"
    Image.fromarray(big.astype(np.uint8)).save(path, quality=92)
    crops = CroppedImages([str(path)], [[0, 0, 1600, 1200]])
    reduced = tiny(decode="reduced").fit(crops)
    exact = tiny(decode="exact").fit(crops)
    seen = []
    original = JpegImageFile.draft

    def spy(self, mode, size):
        seen.append(size)
        return original(self, mode, size)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(JpegImageFile, "draft", spy)
        X_reduced = reduced.transform(crops)
    assert seen and seen[0][0] < 1920  # the decoder was asked for a reduced scale
    X_exact = exact.transform(crops)
    cosine = float(X_reduced[0] @ X_exact[0] / np.linalg.norm(X_reduced[0]) / np.linalg.norm(X_exact[0]))
    assert cosine > 0.99


def test_an_empty_crop_box_names_the_item(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_quadrants()).save(path)
    with pytest.raises(ImageLoadError, match=r"image 7 \(crop .*a\.png.*\): the crop box is empty"):
        load_rgb(Crop(str(path), (5, 5, 0.2, 10)), 7)
    with pytest.raises(ValueError, match="four finite numbers"):
        Crop(str(path), (0, 0, float("nan"), 1))
