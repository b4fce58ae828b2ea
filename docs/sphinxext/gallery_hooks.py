"""sphinx-gallery hooks: an image scraper for every matplotlib figure, and ``__file__`` for the examples.

**Figures.** sphinx-gallery's own scraper shows the figures pyplot knows of; a figure made with
matplotlib's object API (``matplotlib.figure.Figure(...)``, as scripts that save figures headless do) is
missed. This one shows every figure created while a code block runs, pyplot's or not, below the block,
in order of creation.

**``__file__``.** sphinx-gallery runs an example without ``__file__``; a script that finds its data next
to the repository through it (``Path(__file__).parents[1]``) gets the example's path, as when it runs as
``python examples/<name>.py``.
"""

import matplotlib.figure
import matplotlib.pyplot as plt
from sphinx_gallery.scrapers import figure_rst

_created = []  # figures made since the last block was scraped


def _track_figures():
    init = matplotlib.figure.Figure.__init__
    if getattr(init, "_sk_decaf_tracked", False):
        return

    def tracking_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        _created.append(self)

    tracking_init._sk_decaf_tracked = True
    matplotlib.figure.Figure.__init__ = tracking_init


_track_figures()


def scrape(block, block_vars, gallery_conf, **kwargs):
    """Save the figures created by this code block; return the reST that shows them."""
    figures, paths = list(_created), []
    _created.clear()
    for fig, path in zip(figures, block_vars["image_path_iterator"]):
        fig.savefig(path, dpi=100)
        paths.append(path)
        plt.close(fig)  # pyplot keeps the figures it made until they are closed
    return figure_rst(paths, gallery_conf["src_dir"])


def reset(gallery_conf, fname):
    """Forget figures left over from another example (sphinx-gallery ``reset_modules`` hook)."""
    _created.clear()


def reset_argv(gallery_conf, script_vars):
    """Run each example as ``python examples/<name>.py``: no arguments, and ``__file__`` set."""
    script_vars["example_globals"]["__file__"] = str(script_vars["src_file"])
    return []
