"""A sphinx-gallery image scraper for figures made with matplotlib's object API.

``sk_decaf.plotting`` returns ``matplotlib.figure.Figure`` objects and never touches pyplot, so
sphinx-gallery's own scraper (which asks pyplot for its open figures) finds nothing. This one plays
pyplot's part: every ``Figure`` created while a code block runs is saved after the block and shown below
it, in order of creation, whether the example keeps a reference to it or not.
"""

import matplotlib.figure
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
    return figure_rst(paths, gallery_conf["src_dir"])


def reset(gallery_conf, fname):
    """Forget figures left over from another example (sphinx-gallery ``reset_modules`` hook)."""
    _created.clear()
