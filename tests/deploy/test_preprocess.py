"""The runtime's Pillow + numpy preprocessing gives the pipeline's uint8 tensors, byte for byte."""

import io

import numpy as np
import pytest
from PIL import Image

from sk_decaf._images import Crop
from sk_decaf._torch.data import ImageDataset
from sk_decaf._torch.preprocess import make_preprocessor
from sk_decaf.deploy import preprocess
from sk_decaf.deploy import runtime as runtime_module
from sk_decaf.deploy._network import preprocess_config
from sk_decaf.deploy.runtime import preprocess_inputs

#: (data config, preprocess): square and non-square crops, every crop mode, up- and down-sampling crops.
CONFIGS = {
    "lite0": (
        {
            "input_size": (3, 224, 224),
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": (0.5,) * 3,
            "std": (0.5,) * 3,
        },
        "model",
    ),
    "tiny": (
        {
            "input_size": (3, 160, 160),
            "interpolation": "bicubic",
            "crop_pct": 0.95,
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
        },
        "model",
    ),
    "decaf-squash": (
        {
            "input_size": (3, 224, 224),
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
        },
        "decaf",
    ),
    "border": (
        {
            "input_size": (3, 96, 96),
            "interpolation": "bilinear",
            "crop_pct": 0.9,
            "crop_mode": "border",
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
        },
        "model",
    ),
    "non-square": (
        {
            "input_size": (3, 112, 96),
            "interpolation": "bilinear",
            "crop_pct": 0.9,
            "mean": (0.5,) * 3,
            "std": (0.5,) * 3,
        },
        "model",
    ),
    "pad": (
        {
            "input_size": (3, 128, 128),
            "interpolation": "lanczos",
            "crop_pct": 1.15,
            "mean": (0.5,) * 3,
            "std": (0.5,) * 3,
        },
        "model",
    ),
}


def _pattern(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx * 7 + yy * 3) % 256], axis=-1)
    return np.clip(base + rng.integers(0, 60, size=(h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Files and in-memory images of many sizes, aspect ratios and modes."""
    folder = tmp_path_factory.mktemp("preprocess")
    items = []

    def save(name, img, **kwargs):
        path = folder / name
        img.save(path, **kwargs)
        items.append(str(path))

    save("large.jpg", Image.fromarray(_pattern(900, 1200, 0)), quality=90)
    save("larger.jpg", Image.fromarray(_pattern(1600, 2400, 1)), quality=90)
    rotated = Image.fromarray(_pattern(1000, 2400, 2))
    exif = rotated.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    save("rotated.jpg", rotated, exif=exif, quality=90)
    save("grey.jpg", Image.fromarray(_pattern(600, 800, 3)).convert("L"))
    save("cmyk.jpg", Image.fromarray(_pattern(400, 300, 4)).convert("CMYK"))
    save("tiny.png", Image.fromarray(_pattern(20, 30, 5)))
    save("wide.png", Image.fromarray(_pattern(100, 3000, 6)))  # 30:1, past the exact path's pixel bound
    save("tall.png", Image.fromarray(_pattern(1300, 90, 7)))
    rgba = np.dstack([_pattern(120, 90, 8), np.linspace(0, 255, 120 * 90).reshape(120, 90).astype(np.uint8)])
    save("rgba.png", Image.fromarray(rgba, "RGBA"))
    save("la.png", Image.fromarray(rgba).convert("LA"))
    palette = Image.fromarray(_pattern(90, 140, 9)).convert("P")
    save("palette.png", palette, transparency=0)
    save("grey16.png", Image.fromarray(_pattern(70, 50, 10)[..., 0].astype(np.uint16) * 257))
    save("binary.png", Image.fromarray(_pattern(64, 80, 11)).convert("1"))
    items.append(Image.fromarray(_pattern(333, 500, 12)))
    items.append(_pattern(256, 200, 13))
    return items


def _pipeline_tensors(items, data_config, preprocess_mode, decode):
    """What DeCAFTransformer's DataLoader feeds the network (decoding included)."""
    dataset = ImageDataset(items, make_preprocessor(data_config, preprocess_mode, decode))
    out = []
    for k in range(len(dataset)):
        tensor, _, error = dataset[k]
        assert error is None, error
        out.append(tensor.numpy())
    return out


@pytest.mark.parametrize("decode", ["exact", "reduced"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_runtime_preprocessing_equals_pipeline(images, name, decode):
    data_config, preprocess_mode = CONFIGS[name]
    expected = _pipeline_tensors(images, data_config, preprocess_mode, decode)
    config = preprocess_config(data_config, preprocess_mode, decode)
    got = preprocess(images, config)
    assert got.dtype == np.uint8
    assert got.shape == (len(images), 3, *data_config["input_size"][-2:])
    for i, tensor in enumerate(expected):
        assert np.array_equal(got[i], tensor), f"image {i} ({images[i]})"


def test_reduced_decoding_is_exercised(images):
    """The equality above covers JPEG draft decoding and box resampling: they change the pixels."""
    data_config, preprocess_mode = CONFIGS["lite0"]
    large = [images[1], images[6]]  # a 2400x1600 JPEG (decoded at 1/4), a 30:1 strip
    exact = preprocess(large, preprocess_config(data_config, preprocess_mode, "exact"))
    reduced = preprocess(large, preprocess_config(data_config, preprocess_mode, "reduced"))
    assert not np.array_equal(exact[0], reduced[0])
    assert 0 < np.abs(exact.astype(int) - reduced.astype(int)).mean() < 8


def _pipeline_views(items, data_config, preprocess_mode, decode, tta):
    """The ``(n_views, 3, H, W)`` views DeCAFTransformer(tta=...) feeds the network for each item."""
    dataset = ImageDataset(items, make_preprocessor(data_config, preprocess_mode, decode, tta))
    out = []
    for k in range(len(dataset)):
        views, _, error = dataset[k]
        assert error is None, error
        out.append(views.numpy())
    return out


#: Configurations on which the crop modes apply (square centre or squash crops that never upsample).
CROPPED = ["lite0", "tiny", "decaf-squash"]


@pytest.mark.parametrize("decode", ["exact", "reduced"])
@pytest.mark.parametrize("tta", ["10crop", "12jitter"])
@pytest.mark.parametrize("name", CROPPED)
def test_runtime_crops_equal_pipeline_views(images, name, tta, decode):
    """The runtime prepares the crops, byte for byte; the pipeline's other views are their mirrors."""
    data_config, preprocess_mode = CONFIGS[name]
    expected = _pipeline_views(images, data_config, preprocess_mode, decode, tta)
    config = preprocess_config(data_config, preprocess_mode, decode, tta)
    got = preprocess(images, config)
    n_crops = {"10crop": 5, "12jitter": 6}[tta]
    assert got.dtype == np.uint8
    assert got.shape == (len(images), n_crops, 3, *data_config["input_size"][-2:])
    for i, views in enumerate(expected):
        assert np.array_equal(got[i], views[:n_crops]), f"image {i} ({images[i]})"
        assert np.array_equal(got[i][..., ::-1], views[n_crops:]), f"image {i} ({images[i]})"


@pytest.mark.parametrize("decode", ["exact", "reduced"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_flip_is_the_centre_crop_and_its_mirror(images, name, decode):
    """With tta="flip" the runtime prepares the centre crop alone; the graph mirrors it."""
    data_config, preprocess_mode = CONFIGS[name]
    expected = _pipeline_views(images, data_config, preprocess_mode, decode, "flip")
    config = preprocess_config(data_config, preprocess_mode, decode, "flip")
    assert config == preprocess_config(data_config, preprocess_mode, decode)  # the input of tta=None
    got = preprocess(images, config)
    for i, views in enumerate(expected):
        assert np.array_equal(got[i], views[0]) and np.array_equal(got[i][..., ::-1], views[1]), f"image {i}"


@pytest.mark.parametrize("decode", ["exact", "reduced"])
def test_inputs_decode_each_image_once(images, decode, monkeypatch):
    """Several inputs from one decoded image each, equal to each input prepared on its own."""
    configs = [
        preprocess_config(*CONFIGS["lite0"], decode),
        preprocess_config(*CONFIGS["lite0"], decode, "10crop"),
        preprocess_config(*CONFIGS["tiny"], decode),
        preprocess_config(*CONFIGS["border"], decode),
    ]
    alone = [preprocess(images, config) for config in configs]
    decoded = []
    to_rgb = runtime_module._to_rgb
    monkeypatch.setattr(runtime_module, "_to_rgb", lambda img: decoded.append(img.size) or to_rgb(img))
    together = preprocess_inputs(images, configs)
    for got, expected in zip(together, alone):
        assert np.array_equal(got, expected)
    if decode == "exact":
        assert len(decoded) == len(images)
    else:  # JPEG draft scales differ between the 224 and 160 inputs only where the image is large enough
        assert len(images) <= len(decoded) < 2 * len(images)


# -- every source the runtime reads ----------------------------------------------------------------------------
def _as_source(path, kind):
    data = open(path, "rb").read()
    return {
        "bytes": lambda: data,
        "bytearray": lambda: bytearray(data),
        "memoryview": lambda: memoryview(data),
        "BytesIO": lambda: io.BytesIO(data),
        "dict of bytes": lambda: {"bytes": data, "path": "ignored.jpg"},
        "dict of a path": lambda: {"bytes": None, "path": path},
    }[kind]()


SOURCES = ["bytes", "bytearray", "memoryview", "BytesIO", "dict of bytes", "dict of a path"]


@pytest.mark.parametrize("decode", ["exact", "reduced"])
@pytest.mark.parametrize("name", ["lite0", "border"])
@pytest.mark.parametrize("kind", SOURCES)
def test_runtime_reads_every_source_as_the_pipeline_does(images, name, kind, decode):
    """Bytes, file objects and image dicts: the runtime and the pipeline both give the path's tensors, byte for
    byte (reduced JPEG decoding and EXIF orientation included: large.jpg, rotated.jpg)."""
    data_config, preprocess_mode = CONFIGS[name]
    paths = [item for item in images if isinstance(item, str)]
    items = [_as_source(path, kind) for path in paths]
    expected = _pipeline_tensors(paths, data_config, preprocess_mode, decode)
    pipeline = _pipeline_tensors(items, data_config, preprocess_mode, decode)
    config = preprocess_config(data_config, preprocess_mode, decode)
    got = preprocess(items, config)
    for i, path in enumerate(paths):
        assert np.array_equal(pipeline[i], expected[i]), f"{kind} of {path}"
        assert np.array_equal(got[i], expected[i]), f"{kind} of {path}"


def test_runtime_puts_file_objects_back_and_reads_open_files(images):
    config = preprocess_config(*CONFIGS["lite0"], "reduced")
    path = images[0]
    with open(path, "rb") as f:
        f.seek(10)
        got = preprocess([f, io.BytesIO(open(path, "rb").read())], config)
        assert f.tell() == 10 and not f.closed
    assert np.array_equal(got[0], preprocess([path], config)[0]) and np.array_equal(got[0], got[1])


@pytest.mark.parametrize(
    "item, message",
    [
        (Crop("a.jpg", (0, 0, 10, 10)), r"^image 1 \(Crop\): unsupported item type Crop; expected a file path, bytes"),
        (12, r"^image 1 \(int\): unsupported item type int"),
        (b"", r"^image 1 \(0 bytes\): cannot decode: ValueError: no data"),
        (b"\xff\xd8\xff\xe0" + bytes(5000), r"^image 1 \(5004 bytes of JPEG data\): cannot decode"),
        (io.StringIO("text"), r"^image 1 \(StringIO\): cannot decode: ValueError: a text stream"),
        ({"bytes": None, "path": None}, r"^image 1 \(image dict\): cannot decode: ValueError: an image dict whose"),
    ],
)
def test_runtime_bad_items_are_value_errors_naming_index_and_item(images, item, message):
    config = preprocess_config(*CONFIGS["lite0"], "exact")
    with pytest.raises(ValueError, match=message) as info:
        preprocess([images[0], item], config)
    assert len(str(info.value)) < 300
