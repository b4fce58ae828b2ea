"""Loaders against small official-layout folders built in tmp_path."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sk_decaf.datasets import (
    CroppedImages,
    load_caltech101,
    load_cub200,
    load_flowers102,
    load_mit67,
    load_office31,
    load_office_caltech10,
    load_pets,
    load_sun397,
)

Image = pytest.importorskip("PIL.Image")


def _jpeg(path, size=(8, 6), value=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 128)).save(path)
    return path


def _write(path, lines):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{line}\n" for line in lines))


def _shared_data():
    env = os.environ.get("SK_DECAF_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.mark.parametrize(
    "loader",
    [
        load_caltech101,
        load_office31,
        load_office_caltech10,
        load_sun397,
        load_mit67,
        load_cub200,
        load_flowers102,
        load_pets,
    ],
)
def test_missing_root_shows_layout(loader, tmp_path):
    with pytest.raises(FileNotFoundError, match="Expected layout"):
        loader(tmp_path / "missing")


@pytest.mark.parametrize("loader", [load_caltech101, load_office31, load_office_caltech10, load_sun397, load_mit67])
def test_empty_root_shows_layout(loader, tmp_path):
    with pytest.raises(FileNotFoundError, match="Expected layout"):
        loader(tmp_path)


def test_caltech101_background(tmp_path):
    counts = {"BACKGROUND_Google": 2, "Faces_easy": 3, "airplanes": 1}
    for name, n in counts.items():
        for i in range(n):
            _jpeg(tmp_path / "101_ObjectCategories" / name / f"image_{i:04d}.jpg")
    (tmp_path / "101_ObjectCategories" / "airplanes" / "notes.txt").write_text("not an image")
    data = load_caltech101(tmp_path)
    assert_array_equal(data.target_names, sorted(counts))
    assert_array_equal(np.bincount(data.target), [2, 3, 1])
    assert all(isinstance(p, str) and Path(p).is_file() for p in data.paths)
    no_bg = load_caltech101(tmp_path, include_background=False)
    assert_array_equal(no_bg.target_names, ["Faces_easy", "airplanes"])
    assert_array_equal(np.bincount(no_bg.target), [3, 1])
    # The category folder itself is accepted as root too (caltech101_mini layout).
    assert load_caltech101(tmp_path / "101_ObjectCategories").paths == data.paths


def _office31(root):
    for domain, n in (("amazon", 3), ("webcam", 2)):
        for name in ("back_pack", "bike"):
            for i in range(n):
                _jpeg(root / domain / "images" / name / f"frame_{i:04d}.jpg")


def test_office31_domains(tmp_path):
    _office31(tmp_path)
    data = load_office31(tmp_path)
    assert len(data.paths) == 10
    assert_array_equal(data.target_names, ["back_pack", "bike"])
    assert_array_equal(np.unique(data.domain, return_counts=True)[1], [6, 4])
    webcam = load_office31(tmp_path, domain="webcam")
    assert set(webcam.domain) == {"webcam"} and len(webcam.paths) == 4
    both = load_office31(tmp_path, domain=["webcam", "amazon"])
    assert list(both.domain[:4]) == ["webcam"] * 4
    with pytest.raises(ValueError, match="unknown domain"):
        load_office31(tmp_path, domain="dslr")


def test_office31_rejects_office_caltech_layout(tmp_path):
    _jpeg(tmp_path / "amazon" / "bike" / "a.jpg")  # no images/ level
    with pytest.raises(FileNotFoundError, match="images"):
        load_office31(tmp_path)


def test_office_caltech10_layout(tmp_path):
    for domain in ("amazon", "caltech10", "dslr"):
        for name in ("mug", "bike"):
            _jpeg(tmp_path / domain / name / "0001.jpg")
    data = load_office_caltech10(tmp_path, domain=["dslr", "caltech10"])
    assert_array_equal(data.target_names, ["bike", "mug"])
    assert_array_equal(data.domain, ["dslr", "dslr", "caltech10", "caltech10"])
    assert_array_equal(data.target, [0, 1, 0, 1])


def test_office_caltech10_shared_data():
    data = load_office_caltech10(_shared_data() / "office_caltech10")
    assert len(data.paths) == 2533 and len(data.target_names) == 10
    domains, counts = np.unique(data.domain, return_counts=True)
    assert dict(zip(domains, counts)) == {"amazon": 958, "caltech10": 1123, "dslr": 157, "webcam": 295}


def test_sun397_subclasses_and_partitions(tmp_path):
    files = [
        "a/abbey/1.jpg",
        "a/abbey/2.jpg",
        "a/apartment_building/outdoor/3.jpg",
        "a/apartment_building/outdoor/4.jpg",
        "b/bedroom/5.jpg",
        "b/bedroom/6.jpg",
    ]
    for f in files:
        _jpeg(tmp_path / f)
    _write(tmp_path / "Partitions" / "Training_01.txt", ["/a/abbey/1.jpg", "/b/bedroom/5.jpg"])
    _write(tmp_path / "Partitions" / "Testing_01.txt", ["/a/abbey/2.jpg", "/b/bedroom/6.jpg"])
    _write(tmp_path / "Partitions" / "Training_02.txt", ["/a/abbey/2.jpg"])
    _write(tmp_path / "Partitions" / "Testing_02.txt", ["/a/apartment_building/outdoor/3.jpg"])
    data = load_sun397(tmp_path)
    assert_array_equal(data.target_names, ["abbey", "apartment_building/outdoor", "bedroom"])
    assert_array_equal(data.target, [0, 0, 1, 1, 2, 2])
    assert data.split.shape == (2, 6)
    assert_array_equal(data.split[0], ["train", "test", "", "", "train", "test"])
    assert_array_equal(data.split[1], ["", "train", "test", "", "", ""])
    assert "split" not in load_sun397(tmp_path, partitions=None)
    with pytest.raises(FileNotFoundError, match="Training_01"):
        load_sun397(tmp_path, partitions=tmp_path / "a")


def test_mit67_official_lists(tmp_path):
    for f in ("kitchen/k1.jpg", "kitchen/k2.jpg", "bar/b1.jpg", "bar/b2.jpg"):
        _jpeg(tmp_path / "Images" / f)
    _write(tmp_path / "TrainImages.txt", ["kitchen/k1.jpg", "bar/b2.jpg"])
    _write(tmp_path / "TestImages.txt", ["kitchen/k2.jpg", "bar/gone.jpg"])
    with pytest.warns(UserWarning, match="1 image"):
        data = load_mit67(tmp_path)
    assert_array_equal(data.target_names, ["bar", "kitchen"])
    assert_array_equal(data.split, ["", "train", "train", "test"])


def _cub(root):
    """Two birds: images 100x80; boxes (x, y, w, h), one near the border."""
    _write(root / "images.txt", ["1 001.Albatross/a.jpg", "2 002.Wren/b.jpg"])
    _write(root / "image_class_labels.txt", ["1 1", "2 2"])
    _write(root / "bounding_boxes.txt", ["1 10.0 20.0 40.0 20.0", "2 80.0 60.0 20.0 20.0"])
    _write(root / "train_test_split.txt", ["1 1", "2 0"])
    _write(root / "classes.txt", ["1 001.Albatross", "2 002.Wren"])
    _jpeg(root / "images" / "001.Albatross" / "a.jpg", size=(100, 80))
    _jpeg(root / "images" / "002.Wren" / "b.jpg", size=(100, 80))


def test_cub200_boxes_enlarged_and_clipped(tmp_path):
    _cub(tmp_path)
    data = load_cub200(tmp_path)
    assert_array_equal(data.target_names, ["001.Albatross", "002.Wren"])
    assert_array_equal(data.target, [0, 1])
    assert_array_equal(data.split, ["train", "test"])
    # Centre (30, 30), 1.5x -> 60x30 from (0, 15); centre (90, 70) -> clipped at 100x80.
    assert_allclose(data.boxes, [[0, 15, 60, 30], [75, 55, 25, 25]])
    assert isinstance(data.images, CroppedImages)
    assert [im.size for im in data.images] == [(60, 30), (25, 25)]
    assert data.images[1].mode == "RGB"
    plain = load_cub200(tmp_path, crop=None)
    assert plain.images == plain.paths
    assert_allclose(plain.boxes, [[10, 20, 40, 20], [80, 60, 20, 20]])


def test_cropped_images_lazy_indexing(tmp_path):
    _cub(tmp_path)
    crops = load_cub200(tmp_path).images
    sub = crops[np.array([1])]
    assert isinstance(sub, CroppedImages) and sub[0].size == (25, 25)
    assert len(crops[[True, False]]) == 1 and len(crops[1:]) == 1 and len(crops[[]]) == 0
    assert crops[-1].size == (25, 25)
    again = pickle.loads(pickle.dumps(crops))
    assert again.paths == crops.paths and again[0].size == (60, 30)
    with pytest.raises(ValueError, match="boxes"):
        CroppedImages(["a.jpg"], np.zeros((2, 4)))


def test_cub200_missing_annotation(tmp_path):
    _cub(tmp_path)
    (tmp_path / "bounding_boxes.txt").unlink()
    with pytest.raises(FileNotFoundError, match="bounding_boxes.txt"):
        load_cub200(tmp_path)


def test_flowers102_mat_files(tmp_path):
    from scipy.io import savemat

    labels = [1, 2, 2, 1, 3]
    for i in range(1, 6):
        _jpeg(tmp_path / "jpg" / f"image_{i:05d}.jpg")
    savemat(tmp_path / "imagelabels.mat", {"labels": np.array([labels])})
    savemat(tmp_path / "setid.mat", {"trnid": [[1, 2]], "valid": [[3]], "tstid": [[4, 5]]})
    data = load_flowers102(tmp_path)
    assert_array_equal(data.target, np.array(labels) - 1)
    assert_array_equal(data.target_names, ["1", "2", "3"])
    assert_array_equal(data.split, ["train", "train", "val", "test", "test"])
    Path(data.paths[2]).unlink()
    with pytest.raises(FileNotFoundError, match="image_00003"):
        load_flowers102(tmp_path)


def test_pets_lists(tmp_path):
    rows = ["Abyssinian_1 1 1 1", "Abyssinian_2 1 1 1", "american_bulldog_1 2 2 1", "american_bulldog_7 2 2 1"]
    _write(tmp_path / "annotations" / "list.txt", ["#Image CLASS-ID SPECIES BREED ID"] + rows)
    _write(tmp_path / "annotations" / "trainval.txt", [rows[0], rows[2]])
    _write(tmp_path / "annotations" / "test.txt", [rows[1], rows[3]])
    for r in rows:
        _jpeg(tmp_path / "images" / f"{r.split()[0]}.jpg")
    data = load_pets(tmp_path)
    assert_array_equal(data.target_names, ["Abyssinian", "american_bulldog"])
    assert_array_equal(data.target, [0, 0, 1, 1])
    assert_array_equal(data.species, ["cat", "cat", "dog", "dog"])
    assert_array_equal(data.split, ["train", "test", "train", "test"])
    assert all(Path(p).is_file() for p in data.paths)
