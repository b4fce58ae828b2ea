"""Progress bars: what a terminal shows and what a saved notebook keeps, with and without ipywidgets."""

import io
import re
import sys

import pytest

from sk_decaf import _progress
from sk_decaf._progress import progress_bar

FINISHED = re.compile(r"^DeCAF: 100%\|[█#]{10}\| 7/7 ")  # unicode blocks, or ASCII where unsure


def test_terminal_bar_ends_at_100_percent(monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with progress_bar(7) as bar:
        bar.update(3)
        bar.update(4)
    last = stderr.getvalue().rstrip("\n").split("\r")[-1]
    assert FINISHED.match(last), last


def test_disabled_bar_prints_nothing(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "_in_notebook", lambda: True)  # even in a notebook
    with progress_bar(7, disable=True) as bar:
        bar.update(7)
    assert capsys.readouterr() == ("", "")


def _run_in_kernel(source):
    """Execute `source` as the one cell of a notebook in a real kernel; return the cell's outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb.cells[0].outputs


@pytest.mark.parametrize("widgets", [False, True])
def test_saved_notebook_shows_the_finished_bar(widgets):
    if widgets:
        pytest.importorskip("ipywidgets")
    hide = "" if widgets else "import sys; sys.modules['ipywidgets'] = None  # as if not installed\n"
    outputs = _run_in_kernel(
        hide + "from sk_decaf._progress import progress_bar\n"
        "with progress_bar(7) as bar:\n"
        "    bar.update(3)\n"
        "    bar.update(4)\n"
    )
    # One display output, no warning on stderr; what it keeps for non-widget readers is the final state.
    assert [out["output_type"] for out in outputs] == ["display_data"], outputs
    data = outputs[0]["data"]
    assert FINISHED.match(data["text/plain"]), data["text/plain"]
    assert ("application/vnd.jupyter.widget-view+json" in data) == widgets


def test_no_ipywidgets_warning_in_a_notebook_without_ipywidgets():
    # huggingface_hub (imported by timm) imports tqdm.auto, which warns "IProgress not found" in such a notebook.
    outputs = _run_in_kernel(
        "import sys; sys.modules['ipywidgets'] = None  # as if not installed\n"
        "import sk_decaf._progress\n"
        "import tqdm.auto\n"
    )
    assert outputs == []
