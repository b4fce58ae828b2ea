"""Progress bars that read correctly in a terminal and in a saved Jupyter notebook.

``tqdm.auto`` shows an ipywidgets bar in a notebook, but the text a saved notebook keeps for it (its
``text/plain`` form, the only one GitHub, nbconvert or a widget-less front end can show) is taken when the
bar is first displayed: a finished bar is saved as ``DeCAF: 0%``. Without ipywidgets, ``tqdm.auto`` warns
and writes carriage-return updates to stderr. Here a notebook bar is displayed under a display id and
updated in place, so the saved output is the bar's final state:

* in a terminal (or any non-notebook process): ``tqdm``'s text bar on stderr;
* in a notebook with ipywidgets: ``tqdm``'s widget, whose saved text is refreshed when it closes;
* in a notebook without ipywidgets: a text bar updated in place (``update_display``), no warning.

Importing this module in such a notebook also imports ``tqdm.autonotebook`` once with its "IProgress not
found" warning silenced: huggingface_hub, which timm imports, imports ``tqdm.auto`` for its download bars,
and that warning would otherwise appear under the first cell that loads a network, whatever ``verbose``.
"""

import functools
import io
import os
import sys
import warnings

from tqdm.std import tqdm as std_tqdm

__all__ = ["progress_bar"]


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel whose front end renders rich output (not a console)."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    if any(name == "QT_API" or name.startswith("SPYDER") for name in os.environ):
        return False  # qtconsole and Spyder draw text bars well and widgets not at all
    shell = sys.modules["IPython"].get_ipython()
    return shell is not None and "qt" not in type(shell).__name__.lower()


def _has_widgets() -> bool:
    try:
        from tqdm.notebook import IProgress
    except ImportError:  # pragma: no cover - IPython missing
        return False
    return IProgress is not None


def _silence_widget_warning():
    """Import ``tqdm.autonotebook`` without its ipywidgets warning, in a notebook without ipywidgets."""
    if "tqdm.autonotebook" in sys.modules or not _in_notebook() or _has_widgets():
        return
    from tqdm.std import TqdmWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
        import tqdm.autonotebook  # noqa: F401


def _display(obj, **kwargs):
    from IPython.display import display

    return display(obj, **kwargs)


class _TextBar(std_tqdm):
    """tqdm's text bar as a notebook output updated in place (no ipywidgets needed)."""

    def __init__(self, *args, **kwargs):
        self._handle = None  # set before tqdm's __init__, which displays the first state
        super().__init__(*args, file=io.StringIO(), ascii=False, **kwargs)

    def display(self, msg=None, pos=None):
        text = str(self) if msg is None else msg
        if not text:  # tqdm clears a bar with msg="": keep the last state visible instead
            return True
        bundle = {"text/plain": text}
        if self._handle is None:
            self._handle = _display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        return True


@functools.cache
def _widget_bar_class():
    # Defined on first use: importing tqdm.notebook imports ipywidgets, which a terminal never needs.
    from tqdm.notebook import tqdm as notebook_tqdm

    class _WidgetBar(notebook_tqdm):
        """tqdm's widget, displayed under a display id so that its saved text is the final state."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, display=False, **kwargs)
            self._handle = _display(self.container, display_id=True)
            self.displayed = True

        def close(self):
            finished = self.disable
            super().close()
            if not finished:  # re-send the widget: its text/plain form is computed now, at 100 %
                self._handle.update(self.container)

    return _WidgetBar


def progress_bar(total: int, desc: str = "DeCAF", *, unit: str = "img", disable: bool = False) -> std_tqdm:
    """A tqdm progress bar for the current front end; use it as a context manager.

    Parameters
    ----------
    total : int
        Number of items the bar counts to.
    desc : str, default="DeCAF"
        Text in front of the bar.
    unit : str, default="img"
        Unit of the items, shown in the rate.
    disable : bool, default=False
        Show nothing.

    Returns
    -------
    bar : tqdm.tqdm
        A text bar on stderr in a terminal; in a Jupyter notebook an ipywidgets bar when ipywidgets is
        installed, else a text bar updated in place. In both notebook forms the output a saved notebook keeps
        is the bar's last state.

    Examples
    --------
    >>> from sk_decaf._progress import progress_bar
    >>> with progress_bar(3, disable=True) as bar:  # prints nothing
    ...     for _ in range(3):
    ...         _ = bar.update(1)
    """
    kwargs = dict(total=total, desc=desc, unit=unit)
    if disable or not _in_notebook():
        return std_tqdm(disable=disable, **kwargs)
    if _has_widgets():
        return _widget_bar_class()(**kwargs)
    return _TextBar(**kwargs)


_silence_widget_warning()
