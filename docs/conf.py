"""Sphinx configuration of the sk_decaf documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"``). The site has
three parts: the user guide (the Markdown pages of this folder, read by myst-parser), the API reference
(``api.rst``, written at each build from the ``__all__`` of every public subpackage, so that no public
name can be left out; numpydoc renders the docstrings) and the gallery (``examples/*.py``, executed by
sphinx-gallery). Examples that need ``../shared/data`` are rendered without being run when it is absent.
"""

import importlib
import inspect
import os
import pkgutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("agg")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "sphinxext"))

import sk_decaf  # noqa: E402

project = "sk_decaf"
author = "sk_decaf developers"
copyright = "sk_decaf developers, BSD-3-Clause"
version = release = sk_decaf.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "sphinxext", "notebooks", "conftest.py", "**/README.md"]
templates_path = ["_templates"]
default_role = "literal"  # `x` in a docstring is code, as in Markdown

# -- User guide (Markdown) -------------------------------------------------------------------------------
myst_heading_anchors = 3  # links such as caching.md#the-activation-cache resolve
myst_enable_extensions = ["colon_fence"]

# -- API reference -----------------------------------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters section gives the types, in words
autodoc_default_options = {"members": True, "inherited-members": True}
numpydoc_show_class_members = False  # the class template lists the methods itself
numpydoc_class_members_toctree = False

# -- Gallery -----------------------------------------------------------------------------------------------
SHARED_DATA = Path(os.environ.get("SK_DECAF_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
_run = ["plot_figures", "plot_layer_dropout_grid"]  # the embedded demo set: always run
if (SHARED_DATA / "office_caltech10").is_dir():
    _run.append("plot_domain_adaptation")
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/(%s)\.py$" % "|".join(_run),  # the others are shown, not run
    "image_scrapers": ("figure_scraper.scrape",),  # sk_decaf.plotting returns Figures, not pyplot state
    "reset_modules": ("figure_scraper.reset",),
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    "show_memory": False,
    "doc_module": ("sk_decaf",),
    "backreferences_dir": "generated",  # "Examples using X" under each API page
    "reference_url": {"sk_decaf": None},  # names in the examples' code link to the API pages
    "download_all_examples": False,
}

# -- HTML --------------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sk_decaf {version}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 5,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "api": [], "auto_examples/index": []}

# -- API page, written from the package ---------------------------------------------------------------------
#: Sections in reading order; a public subpackage missing here is appended at the end.
API_SECTIONS = [
    "transformers",
    "domain",
    "heads",
    "model_selection",
    "evaluation",
    "datasets",
    "plotting",
    "parallel",
    "deploy",
    "cli",
]


def _public_subpackages():
    found = [m.name for m in pkgutil.iter_modules(sk_decaf.__path__) if m.ispkg and not m.name.startswith("_")]
    return [name for name in API_SECTIONS if name in found] + sorted(set(found) - set(API_SECTIONS))


def _kind(obj):
    return "class" if inspect.isclass(obj) else "function"


def api_entries():
    """``{subpackage: [(documented name, object)]}``; names exported by ``sk_decaf`` keep their short path."""
    top = {id(getattr(sk_decaf, name)): f"sk_decaf.{name}" for name in sk_decaf.__all__ if not name.startswith("_")}
    entries, problems = {}, []
    for sub in _public_subpackages():
        module = importlib.import_module(f"sk_decaf.{sub}")
        if not hasattr(module, "__all__"):
            problems.append(f"sk_decaf.{sub} has no __all__: its public names cannot be listed")
            continue
        entries[sub] = [(top.get(id(getattr(module, n)), f"sk_decaf.{sub}.{n}"), getattr(module, n)) for n in module.__all__]
    listed = {id(obj) for items in entries.values() for _, obj in items}
    problems += [f"{top[key]} is exported by sk_decaf but by no public subpackage" for key in top if key not in listed]
    return entries, problems


def write_api_page(path):
    """Write the API reference page: one section per subpackage, its docstring, an autosummary per kind."""
    entries, problems = api_entries()
    lines = [
        ".. This page is written by conf.py at every build, from the __all__ of each public subpackage.",
        "",
        "API reference",
        "=============",
        "",
        "Every public name of ``sk_decaf``, by subpackage. Names importable from ``sk_decaf`` itself are listed "
        "under their short name (``sk_decaf.DeCAFTransformer``).",
        "",
    ]
    for sub, items in entries.items():
        title = f"``sk_decaf.{sub}``"
        lines += [title, "-" * len(title), "", f".. automodule:: sk_decaf.{sub}", "   :no-members:", ""]
        for kind in ("class", "function"):
            names = [name for name, obj in items if _kind(obj) == kind]
            if names:
                lines += [".. autosummary::", "   :toctree: generated/", f"   :template: {kind}.rst", ""]
                lines += [f"   ~{name}" for name in names] + [""]
    Path(path).write_text("\n".join(lines))
    return problems


def _resolve_alias(app, env, node, contnode):
    """Resolve ``sk_decaf.sub.Name`` to the page of ``sk_decaf.Name`` (and back): one object, one page."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("sk_decaf."):
        return None
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    entries, _ = api_entries()
    for items in entries.values():
        for name, other in items:
            if other is obj and name != target:
                domain = env.get_domain("py")
                return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], name, node, contnode)
    return None


def _on_builder_inited(app):
    from sphinx.util import logging

    logger = logging.getLogger("sk_decaf.api")
    for problem in write_api_page(HERE / "api.rst"):
        logger.warning(problem)


def setup(app):
    app.connect("builder-inited", _on_builder_inited, priority=100)  # before autosummary reads api.rst
    app.connect("missing-reference", _resolve_alias)
