"""ResizeCrop: timm's pixels when exact, bounded and close when reduced, and the test-time views."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from PIL import Image

from sk_decaf import DeCAFTransformer
from sk_decaf._images import load_rgb
from sk_decaf._torch.preprocess import ResizeCrop, build_transform
from tests.conftest import TINY, assert_features_close

CFG = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": (0.5,) * 3,
    "std": (0.5,) * 3,
    "crop_pct": 0.875,
    "crop_mode": "center",
}
SIZES = [(48, 64), (300, 200), (481, 640), (224, 224), (255, 257), (1000, 97)]


def photo(h, w, seed=0, period=1.0):
    """A smooth, photo-like image (random noise would exaggerate resampling differences)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = [np.sin((xx / (7 + 5 * c) + yy / (11 + 3 * c)) / period + rng.uniform(0, 6)) for c in range(3)]
    return Image.fromarray(((np.stack(base, -1) + 1) * 127.5).astype(np.uint8))


@pytest.mark.parametrize("preprocess", ["model", "decaf"])
@pytest.mark.parametrize("size", SIZES)
def test_exact_is_timms_transform(preprocess, size):
    img = photo(*size)
    ours = ResizeCrop(CFG, preprocess, "exact")(img)
    assert ours.dtype.is_floating_point is False and tuple(ours.shape) == (3, 224, 224)
    np.testing.assert_array_equal(ours.numpy(), np.asarray(build_transform(CFG, preprocess)(img)))


def test_exact_resamples_only_the_crop_for_extreme_aspect_ratios():
    """Beyond about 12:1 the full resize would be huge: the crop's box is resampled, within a grey level."""
    img = photo(1000, 37)
    ours = ResizeCrop(CFG, "model", "exact")(img).numpy().astype(float)
    timm = np.asarray(build_transform(CFG, "model")(img)).astype(float)
    assert np.abs(ours - timm).mean() < 1.0


@pytest.mark.parametrize("size", SIZES + [(3024, 4032), (1000, 37)])
def test_reduced_is_close_to_exact(size):
    img = photo(*size)
    exact = ResizeCrop(CFG, "model", "exact")(img).numpy().astype(float)
    reduced = ResizeCrop(CFG, "model", "reduced")(img).numpy().astype(float)
    assert np.abs(reduced - exact).mean() < 2.0  # grey levels of 255


def test_draft_decodes_a_large_jpeg_at_a_reduced_scale(tmp_path):
    path = tmp_path / "big.jpg"
    photo(3024, 4032, period=8).save(path, quality=90)  # detail at the scale of a photo's, not of pixels
    prep = ResizeCrop(CFG, "model", "reduced")
    img = load_rgb(path, draft=prep.draft_size)
    assert img.size == (504, 378)  # 1/8 scale: still at least the 341x256 resize
    exact = ResizeCrop(CFG, "model", "exact")(load_rgb(path)).numpy().astype(float)
    assert np.abs(prep(img).numpy() - exact).mean() / 255 < 0.01


def test_draft_respects_exif_orientation(tmp_path):
    """A portrait photo stored landscape with EXIF orientation 6 is drafted for its displayed size."""
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(1500, 4000).save(path, quality=90, exif=exif.tobytes())
    prep = ResizeCrop(CFG, "model", "reduced")
    img = load_rgb(path, draft=prep.draft_size)
    assert img.size[1] > img.size[0]  # displayed as portrait
    w, h = prep.resized_size(*img.size)
    assert img.size[0] >= w and img.size[1] >= h


@pytest.mark.parametrize("preprocess", ["model", "decaf"])
@pytest.mark.parametrize("decode", ["exact", "reduced"])
def test_tta_views(preprocess, decode):
    img = photo(300, 420)
    plain = ResizeCrop(CFG, preprocess, decode)(img).numpy()
    flip = ResizeCrop(CFG, preprocess, decode, tta="flip")(img).numpy()
    assert flip.shape == (2, 3, 224, 224)
    np.testing.assert_array_equal(flip[0], plain)
    np.testing.assert_array_equal(flip[1], plain[:, :, ::-1])
    ten = ResizeCrop(CFG, preprocess, decode, tta="10crop")(img).numpy()
    assert ten.shape == (10, 3, 224, 224)
    assert np.abs(ten[0].astype(int) - plain).max() <= 1
    np.testing.assert_array_equal(ten[5:], ten[:5, :, :, ::-1])
    twelve = ResizeCrop(CFG, preprocess, decode, tta="12jitter")(img).numpy()
    assert twelve.shape == (12, 3, 224, 224)
    np.testing.assert_array_equal(twelve[:5], ten[:5])
    whole = np.asarray(img.resize((224, 224), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    assert np.abs(twelve[5].astype(int) - whole).mean() < 1.0
    np.testing.assert_array_equal(twelve[6:], twelve[:6, :, :, ::-1])


def test_tta_corners_are_the_corners_of_the_resized_image():
    img = photo(300, 420)
    ten = ResizeCrop(CFG, "model", "exact", tta="10crop")(img).numpy()
    full = np.asarray(img.resize((358, 256), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    np.testing.assert_array_equal(ten[1], full[:, :224, :224])
    np.testing.assert_array_equal(ten[4], full[:, -224:, -224:])


def tiny(**kwargs):
    params = dict(backbone=TINY, weights="random", random_state=0, engine="torch", layer="blocks.2")
    params.update(kwargs)
    return DeCAFTransformer(**params)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_flip_tta_reduces_image_and_mirror(rgb_arrays, engine, reduce):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    images = [np.ascontiguousarray(a) for a in rgb_arrays]
    mirrors = [np.ascontiguousarray(a[:, ::-1]) for a in rgb_arrays]
    base = tiny(engine=engine).fit(images)
    a, b = base.transform(images), base.transform(mirrors)
    X = tiny(engine=engine, tta="flip", tta_reduce=reduce, batch_size=2).fit(images).transform(images)
    expected = np.maximum(a, b) if reduce == "max" else (a + b) / 2
    # The mirror of a centre crop is the centre crop of the mirror up to one pixel (an odd margin rounds
    # to the same side), so the features agree to about 2e-4 of their scale, not to float32 noise.
    assert_features_close(X, expected, rtol=1e-3)


def test_tta_works_with_layer_lists_grid_pooling_and_cache(rgb_arrays, tmp_path):
    decaf = tiny(layer=["blocks.1", "blocks.3"], pooling=2, tta="10crop", cache=tmp_path / "c.sqlite")
    X = decaf.fit(rgb_arrays).transform(rgb_arrays)
    assert X.shape == (len(rgb_arrays), decaf.n_features_out_)
    again = decaf.transform(rgb_arrays)
    assert decaf.cache_info()["computed"] == len(rgb_arrays)
    assert_allclose(again, X, rtol=1e-6)
    plain = tiny(layer=["blocks.1", "blocks.3"], pooling=2, cache=tmp_path / "c.sqlite").fit(rgb_arrays)
    assert not np.allclose(plain.transform(rgb_arrays), X, atol=1e-4)  # another key, other values


@pytest.mark.parametrize(
    "decode,model,cpus,expected",
    [
        (0.0008, 0.0048, 2, 0),  # demo thumbnails (measured): the network dominates, decode in the main process
        (0.016, 0.0048, 2, 2),  # 12 MP JPEGs drafted at 1/8 (measured): both cores decode beside the network
        (0.008, 0.004, 2, 1),  # decoding twice the network: one worker already reaches the shared-core bound
        (0.131, 0.007, 2, 2),  # full-size decoding on 2 cores: the network is idle most of the time
        (0.131, 0.007, 16, 8),  # many cores: up to 8 decoders
        (0.005, 0.005, 1, 0),  # one core: nothing to overlap
    ],
)
def test_decode_workers_follow_the_measured_costs(decode, model, cpus, expected):
    from sk_decaf._torch.featurizer import Featurizer

    assert Featurizer.decode_workers({"decode": decode, "model": model}, cpus=cpus) == expected


@pytest.mark.parametrize("workers", [0, 2])
def test_adaptive_decoding_gives_the_same_rows(image_files, workers, monkeypatch):
    """The timed first batch, then the rest decoded by `workers` processes (whatever this machine's timings
    would choose), in order, equal one main-process pass."""
    from sk_decaf._torch import featurizer
    from sk_decaf._torch.data import make_loader

    timings, loaders = [], []

    def chosen(timing, cpus=None):
        timings.append(dict(timing))
        return workers

    def recorded(*args, **kwargs):
        loaders.append(make_loader(*args, **kwargs))
        return loaders[-1]

    monkeypatch.setattr(featurizer.Featurizer, "decode_workers", staticmethod(chosen))
    monkeypatch.setattr(featurizer, "make_loader", recorded)
    items = image_files * 3
    decaf = tiny(batch_size=2).fit(items)
    loaders.clear()
    auto = decaf.transform(items)
    # The first batch was timed (decoding and network), then the rest went to `workers` processes.
    assert len(timings) == 1 and timings[0]["decode"] > 0 and timings[0]["model"] > 0
    assert [loader.num_workers for loader in loaders] == [0, workers]
    loaders.clear()
    main = tiny(batch_size=2, n_jobs=1).fit(items).transform(items)
    assert [loader.num_workers for loader in loaders] == [0]
    assert_allclose(auto, main, rtol=1e-5, atol=1e-6)
