"""Every code block of README.md and docs/*.md runs, in page order, as a reader would run it.

``--doctest-glob='*.md'`` checks the ``>>>`` examples of the pages; this module runs the other blocks.

* **Python blocks** (```` ```python ````) of one page run in order in one namespace, so a block may use the
  names that the earlier blocks of its page define (``>>>`` examples included: their code runs too, their
  output is left to the doctests). Every page runs in one working folder, where files the blocks write
  (``activations.sqlite``, ``model.onnx``) land; matplotlib draws with Agg; a ``sklearn.set_config`` in a
  block lasts for the rest of its page only.
* **What the reader brings.** Where the prose says, in effect, "with ``train_paths`` your images", the test
  brings them: ``READER_INPUTS`` below builds each page's inputs (image paths and labels, feature arrays, a
  small ``CUB_200_2011`` or ``office31`` folder) from the embedded demo set before the page's first block,
  and checks that each supplied name is one the page uses and does not define itself. The inputs are
  small, so that the module runs in about a minute on 2 cores; the blocks run as written.
* **Markers.** An HTML comment on the line before a block's opening fence, invisible on the rendered page:
  ``<!-- requires: shared-data -->`` runs the block only where ``../shared/data`` (or
  ``$SK_DECAF_SHARED_DATA``) exists, as the ``shared_data`` fixture does; ``<!-- skip: reason -->`` never
  runs it and reports the reason.
* **Shell blocks** (``bash``, ``console``): the ``sk-decaf`` command lines run in-process through
  ``sk_decaf.cli.main``, in page order, in the same working folder, and must exit with status 0. The folders
  the examples name hold small copies of demo images: ``DIR`` and ``photos`` 3 classes x 4 images, ``new``
  2 images; ``*`` patterns are expanded there. ``sk-decaf demo`` runs on the whole embedded demo set, as
  written. Other lines (``pip``, ``pytest``, ``python``) are not run.
"""

import doctest
import glob
import re
import shlex
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, shared_data_root

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(?P<kind>requires|skip)\s*:\s*(?P<value>.*?)\s*-->\s*$")


def _name(page):
    return page.relative_to(REPO).as_posix()


def _blocks(page):
    """``[(line, lang, code, marker)]`` of the fenced blocks of a page; marker is ``(kind, value)`` or None."""
    text = page.read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        line = text.count("\n", 0, match.start()) + 1
        out.append((line, match["lang"].lower(), match["code"], marker and (marker["kind"], marker["value"])))
    return out


def _python_blocks(page):
    """``[(line, code, marker, is_doctest)]``: the page's Python in order, ``>>>`` examples as plain code."""
    out = []
    for line, lang, code, marker in _blocks(page):
        if lang not in ("python", "py", "pycon"):
            continue
        if code.lstrip().startswith(">>>"):
            out.append((line, doctest.DocTestParser().get_examples(code), marker, True))
        else:
            out.append((line, textwrap.dedent(code), marker, False))
    return out


BLOCKS = {page: _python_blocks(page) for page in PAGES}
PYTHON = [(page, line) for page, blocks in BLOCKS.items() for line, _, _, is_doctest in blocks if not is_doctest]


# -- what the reader brings -------------------------------------------------------------------------------
def _demo_subset(per_class, classes=range(10), start=0):
    """Paths and labels of `per_class` demo images of each class, from the `start`-th image of the class."""
    from sk_decaf.datasets import load_demo

    demo = load_demo()
    picked = [i for c in classes for i in np.flatnonzero(demo.target == c)[start : start + per_class]]
    return [demo.paths[i] for i in picked], demo.target[picked]


def _copy_classes(root, per_class, classes=range(3), start=0):
    """Copy demo images into ``root/<class>/``."""
    from sk_decaf.datasets import load_demo

    names = load_demo().target_names
    for path, label in zip(*_demo_subset(per_class, classes, start)):
        folder = Path(root) / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder)


def _teaser(ns, workdir):
    ns["train_paths"], ns["train_labels"] = _demo_subset(2, start=0)
    ns["test_paths"], _ = _demo_subset(1, start=2)


def _fine_tuning(ns, workdir):
    # 2 classes x 3 images: early stopping holds one image per class out for validation.
    ns["train_paths"], ns["y_train"] = _demo_subset(3, classes=range(2), start=0)
    ns["test_paths"], ns["y_test"] = _demo_subset(1, classes=range(2), start=3)


def _retrieval(ns, workdir):
    # 17 database images (n_components=16 needs 17) and 3 queries: 600 windows for the spatial search.
    paths, labels = _demo_subset(2, start=0)
    ns["database_paths"], ns["y_database"] = paths[:17], labels[:17]
    ns["query_paths"], ns["y_query"] = _demo_subset(1, classes=range(3), start=10)


def _protocols(ns, workdir):
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from sk_decaf import DeCAFTransformer
    from sk_decaf.datasets import load_demo

    # A CUB-200-2011 folder of 3 species x 2 demo images, one for training and one for testing each.
    paths, labels = _demo_subset(2, classes=range(3))
    root = workdir / "CUB_200_2011"
    lines = {"images": [], "image_class_labels": [], "bounding_boxes": [], "train_test_split": []}
    for i, (path, label) in enumerate(zip(paths, labels), start=1):
        name = f"{label + 1:03d}.species_{label + 1}/{Path(path).name}"
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "images" / name)
        lines["images"].append(f"{i} {name}")
        lines["image_class_labels"].append(f"{i} {label + 1}")
        lines["bounding_boxes"].append(f"{i} 20.0 20.0 100.0 80.0")
        lines["train_test_split"].append(f"{i} {i % 2}")
    for stem, content in lines.items():
        (root / f"{stem}.txt").write_text("\n".join(content) + "\n")
    # An Office-31 folder of 3 classes: amazon has the 20 images per class the protocol draws, webcam the
    # 3 labelled + 1 test images per class (copies of amazon's first four: the demo set has 20 per class).
    _copy_classes(workdir / "office31" / "amazon" / "images", 20)
    _copy_classes(workdir / "office31" / "webcam" / "images", 4)
    # The reader's own pipeline, with the cache that the README's quick start fills in the same folder.
    ns["estimator"] = make_pipeline(DeCAFTransformer(cache="activations.sqlite"), LinearSVC())
    ns["dataset"] = load_demo()


def _domain_features(ns, workdir):
    """Features of 4 classes in two domains: amazon (20 labelled rows per class) and webcam, whose features
    are shifted and rescaled (5 labelled rows per class, 10 more unlabelled)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 64))
    shift, scale = rng.normal(size=64), rng.uniform(0.5, 2.0, size=64)

    def draw(n, domain):
        y = np.repeat(np.arange(4), n)
        X = centres[y] + 0.5 * rng.normal(size=(len(y), 64))
        return (X * scale + shift if domain == "webcam" else X), y, np.full(len(y), domain)

    (Xs, ys, ds), (Xl, yl, dl), (Xt, _, dt) = draw(20, "amazon"), draw(5, "webcam"), draw(10, "webcam")
    ns["X_train"], ns["y_train"], ns["d_train"] = np.vstack([Xs, Xl]), np.r_[ys, yl], np.r_[ds, dl]
    ns["X_target"] = Xt
    ns["X_all"], ns["d_all"] = np.vstack([ns["X_train"], Xt]), np.r_[ns["d_train"], dt]


def _deploy(ns, workdir):
    from PIL import Image
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from sk_decaf import DeCAFTransformer, SignedSqrt

    # The pipeline "fitted in a notebook", on 3 classes x 2 demo images.
    paths, labels = _demo_subset(2, classes=range(3))
    ns["pipe"] = Pipeline([("decaf", DeCAFTransformer()), ("sqrt", SignedSqrt()), ("svm", LinearSVC())])
    ns["pipe"].fit(paths, labels)
    ns["some_images"] = _demo_subset(1, classes=range(3), start=2)[0]
    shutil.copy(paths[0], workdir / "photo.jpg")  # the files the page's prediction example names
    Image.open(paths[-1]).save(workdir / "other.png")


READER_INPUTS = {
    "README.md": _teaser,
    "docs/index.md": _teaser,
    "docs/fine_tuning.md": _fine_tuning,
    "docs/retrieval.md": _retrieval,
    "docs/protocols.md": _protocols,
    "docs/domain_adaptation.md": _domain_features,
    "docs/deploy.md": _deploy,
    "docs/recipes.md": _teaser,
}


def _free_names(page_name):
    """Names the page's Python uses before (or without) defining them: what the reader must bring."""
    import ast
    import builtins

    defined, free = set(dir(builtins)), set()
    for _, code, _, is_doctest in BLOCKS[REPO / page_name]:
        for source in [ex.source for ex in code] if is_doctest else [code]:
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            local = set()  # comprehension variables, functions and classes: defined where they are used
            for node in ast.walk(tree):
                if isinstance(node, ast.comprehension):
                    local |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    local.add(node.name)
                elif isinstance(node, ast.arg):
                    local.add(node.arg)
            nodes = sorted(
                (n for n in ast.walk(tree) if isinstance(n, (ast.Name, ast.alias))),
                key=lambda n: (n.lineno, n.col_offset) if hasattr(n, "lineno") else (0, 0),
            )
            for node in nodes:
                if isinstance(node, ast.alias):
                    defined.add((node.asname or node.name).split(".")[0])
                elif not isinstance(node.ctx, ast.Load):
                    defined.add(node.id)
                elif node.id not in defined and node.id not in local:
                    free.add(node.id)
    return free


# -- running a page ---------------------------------------------------------------------------------------
class _Page:
    """The namespace of one page, its scikit-learn configuration, and which of its blocks have run."""

    def __init__(self, page):
        import sklearn

        self.page = page
        self.ns = {"__name__": "__main__"}
        # A reader's fresh session: metadata routing off (importing skada elsewhere switches it on globally).
        self.config = {**sklearn.get_config(), "enable_metadata_routing": False}
        self.done = {}  # line -> None, or the exception the block raised
        self.inputs_ready = False


_STATE = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The folder every page runs in, with the folders that the shell examples name."""
    root = tmp_path_factory.mktemp("docs")
    _copy_classes(root / "DIR", 4)
    _copy_classes(root / "photos", 4)
    new = root / "new"
    new.mkdir()
    for i, path in enumerate(_demo_subset(1, classes=[0, 5])[0], start=1):
        shutil.copy(path, new / f"{i}.jpg")
    yield root
    _close_clusters()


def _close_clusters():
    """Close the Dask clients and clusters that pages started, so that no worker outlives the module."""
    import sys

    distributed = sys.modules.get("distributed")
    if distributed is None:
        return
    for kind in (distributed.Client, distributed.deploy.Cluster):  # clients before their clusters
        for state in _STATE.values():
            for value in list(state.ns.values()):
                if isinstance(value, kind):
                    value.close()


@pytest.fixture
def page_state(request, workdir, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(workdir)
    page = request.node.callspec.params["block"][0]
    state = _STATE.setdefault(page, _Page(page))
    if not state.inputs_ready:
        state.inputs_ready = True
        setup = READER_INPUTS.get(_name(page))
        if setup is not None:
            supplied = {}
            setup(supplied, workdir)
            # Inputs follow the page: a name the page no longer uses, or now defines itself, is an error.
            unused = sorted(set(supplied) - _free_names(_name(page)))
            assert not unused, f"READER_INPUTS gives {_name(page)} {unused}, which it does not use or defines"
            state.ns.update(supplied)
    return state


def _exec(state, source, filename):
    import sklearn

    outside = sklearn.get_config()
    sklearn.set_config(**state.config)
    try:
        exec(compile(source, filename, "exec"), state.ns)
    finally:
        state.config = sklearn.get_config()
        sklearn.set_config(**outside)


def _run(state, line, code, is_doctest):
    filename = f"{_name(state.page)}:{line}"
    if is_doctest:  # the doctests check the output; here the examples only define names for later blocks
        for example in code:
            try:
                _exec(state, example.source, filename)
            except Exception:
                if example.exc_msg is None:
                    break
        state.done[line] = None
        return
    try:
        _exec(state, code, filename)
    except BaseException as exc:
        state.done[line] = exc
        raise
    state.done[line] = None


def _skip_reason(marker):
    if marker is None:
        return None
    kind, value = marker
    if kind == "skip":
        return value or "marked skip"
    if value == "shared-data":
        return None if shared_data_root() is not None else "needs ../shared/data (set SK_DECAF_SHARED_DATA)"
    raise ValueError(f"unknown requirement {value!r} (known: shared-data)")


@pytest.mark.parametrize("block", PYTHON, ids=[f"{_name(page)}:{line}" for page, line in PYTHON])
def test_python_block(block, page_state):
    page, line = block
    for earlier, code, marker, is_doctest in BLOCKS[page]:
        reason = _skip_reason(marker)
        if earlier == line:
            if reason:
                pytest.skip(reason)
            _run(page_state, line, code, is_doctest)
            return
        if reason:
            continue
        if earlier not in page_state.done:  # this block was selected alone: run its page up to it first
            _run(page_state, earlier, code, is_doctest)
        if page_state.done[earlier] is not None:
            pytest.fail(f"an earlier block of the page failed ({_name(page)}:{earlier}): {page_state.done[earlier]!r}")


def test_reader_inputs_name_pages_with_python():
    for name in READER_INPUTS:
        assert (REPO / name).is_file(), f"{name} is gone: drop it from READER_INPUTS"
        assert any(p == REPO / name for p, _ in PYTHON), f"{name} has no Python block left"


# -- shell blocks -----------------------------------------------------------------------------------------
def _commands():
    out = []
    for page in PAGES:
        for line, lang, code, marker in _blocks(page):
            if lang not in ("bash", "sh", "shell", "console"):
                continue
            for offset, text in enumerate(code.splitlines()):
                text = text.strip().removeprefix("$ ")
                if text.startswith("sk-decaf "):
                    out.append((page, line + 1 + offset, text, marker))
    return out


COMMANDS = _commands()


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{_name(p)}:{line}" for p, line, _, _ in COMMANDS])
def test_shell_command(command, workdir, monkeypatch, capsys):
    from sk_decaf.cli import main

    page, line, text, marker = command
    reason = _skip_reason(marker)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(workdir)
    argv = []
    for arg in shlex.split(text, comments=True)[1:]:
        argv += sorted(glob.glob(arg)) if "*" in arg else [arg]
    status = main(argv)
    assert status == 0, f"{_name(page)}:{line}: `{text}` exited with {status}\n{capsys.readouterr().err}"


def test_markers_are_read_from_the_line_before_the_fence(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(
        textwrap.dedent("""\
        Text.

        <!-- requires: shared-data -->
        ```python
        x = 1
        ```
        <!-- skip: needs a GPU -->

        ```python
        >>> 1 + 1
        2

        ```
        ```bash
        sk-decaf demo
        ```
        """)
    )
    (first, *_), (second, *_), (third, *_) = [(b[3], b) for b in _blocks(page)]
    assert first == ("requires", "shared-data") and second == ("skip", "needs a GPU") and third is None
    assert _skip_reason(second) == "needs a GPU"
    monkeypatch.setenv("SK_DECAF_SHARED_DATA", str(tmp_path))
    assert _skip_reason(first) is None
    monkeypatch.setenv("SK_DECAF_SHARED_DATA", str(tmp_path / "absent"))
    assert "shared" in _skip_reason(first)
    with pytest.raises(ValueError, match="unknown requirement"):
        _skip_reason(("requires", "a-gpu"))
