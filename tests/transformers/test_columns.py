"""A column of images as scikit-learn passes it: 1-D, or the one-column 2-D form of a list selector."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_decaf import DeCAFTransformer
from tests.conftest import TINY, assert_features_close


def tiny(**kwargs):
    return DeCAFTransformer(TINY, layer="pre_logits", weights="random", random_state=0, engine="torch", **kwargs)


@pytest.fixture
def frame(image_files):
    return pd.DataFrame({"path": image_files, "size": np.arange(len(image_files), dtype=float)})


def test_one_column_tables_are_their_column(image_files, frame):
    est = tiny().fit(image_files)
    expected = est.transform(image_files)
    assert_features_close(est.transform(frame[["path"]]), expected)  # a one-column DataFrame
    assert_features_close(est.transform(np.asarray(image_files, dtype=object)[:, None]), expected)  # (n, 1)
    assert_features_close(est.transform(np.asarray(image_files)[:, None]), expected)  # (n, 1) of str
    assert_features_close(est.transform(frame["path"]), expected)  # the 1-D column, as before


def test_a_table_of_several_columns_is_refused_clearly(frame):
    with pytest.raises(ValueError, match=r"one column of images, got a table with 2 columns \['path', 'size'\]"):
        tiny().fit(frame).transform(frame)


@pytest.mark.parametrize("selector", [["path"], "path"])
def test_inside_a_column_transformer_with_pandas_output(frame, selector, image_files):
    columns = ColumnTransformer([("img", tiny(), selector), ("num", StandardScaler(), ["size"])])
    columns.set_output(transform="pandas")
    out = columns.fit_transform(frame)
    assert isinstance(out, pd.DataFrame) and out.shape[0] == len(frame)
    decaf_columns = [c for c in out.columns if c.startswith("img__")]
    assert decaf_columns[0] == "img__pre_logits_0" and "num__size" in out.columns
    assert_features_close(out[decaf_columns].to_numpy(), tiny().fit(image_files).transform(image_files))
    model = make_pipeline(columns, LogisticRegression()).fit(frame, [0, 1, 0, 1, 0])
    assert model.predict(frame).shape == (len(frame),)


# -- columns of encoded images: bytes, Hugging Face image dicts, Parquet ---------------------------------------
def _encoded_frame(image_files, kind):
    data = [open(p, "rb").read() for p in image_files]
    column = data if kind == "bytes" else [{"bytes": d, "path": f"img_{i}.jpg"} for i, d in enumerate(data)]
    return pd.DataFrame({"image": column, "size": np.arange(len(data), dtype=float)})


@pytest.mark.parametrize("kind", ["bytes", "dicts"])
def test_columns_of_bytes_and_image_dicts(image_files, kind):
    est = tiny().fit(image_files)
    expected = est.transform(image_files)
    frame = _encoded_frame(image_files, kind)
    assert_features_close(est.transform(frame["image"]), expected)  # the 1-D column
    assert_features_close(est.transform(frame[["image"]]), expected)  # the one-column table
    assert_features_close(est.transform(frame[["image"]].to_numpy()), expected)  # its (n, 1) object array
    assert_features_close(tiny().fit(frame["image"]).transform(list(frame["image"])), expected)


@pytest.mark.parametrize("backend", ["numpy_nullable", "pyarrow"])
@pytest.mark.parametrize("kind", ["bytes", "dicts"])
def test_parquet_columns_read_through_pandas(image_files, kind, backend, tmp_path):
    """A Parquet binary column, and a struct column {bytes, path} as a Hugging Face image column is stored."""
    pytest.importorskip("pyarrow")
    _encoded_frame(image_files, kind).to_parquet(tmp_path / "images.parquet")
    frame = pd.read_parquet(tmp_path / "images.parquet", dtype_backend=backend)
    expected = tiny().fit(image_files).transform(image_files)
    assert_features_close(tiny().fit(frame["image"]).transform(frame["image"]), expected)
    assert_features_close(tiny().fit(frame[["image"]]).transform(frame[["image"]]), expected)


@pytest.mark.parametrize("selector", [["image"], "image"])
@pytest.mark.parametrize("kind", ["bytes", "dicts"])
def test_encoded_columns_inside_a_column_transformer(image_files, kind, selector):
    frame = _encoded_frame(image_files, kind)
    columns = ColumnTransformer([("img", tiny(), selector), ("num", StandardScaler(), ["size"])])
    columns.set_output(transform="pandas")
    out = columns.fit_transform(frame)
    decaf_columns = [c for c in out.columns if c.startswith("img__")]
    assert_features_close(out[decaf_columns].to_numpy(), tiny().fit(image_files).transform(image_files))
    model = make_pipeline(columns, LogisticRegression()).fit(frame, [0, 1, 0, 1, 0])
    assert model.predict(frame).shape == (len(frame),)
