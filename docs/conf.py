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
import re
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
numpydoc_show_class_members = False  # the class template lists the methods itself
numpydoc_class_members_toctree = False

# -- Gallery -----------------------------------------------------------------------------------------------
SHARED_DATA = Path(os.environ.get("SK_DECAF_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
#: Examples that need a data set under SHARED_DATA: shown but not run when it is absent. Every other
#: ``plot_*.py`` runs on the embedded demo set.
NEEDS_DATA = {"plot_domain_adaptation": "office_caltech10"}
_skip = [name for name, folder in NEEDS_DATA.items() if not (SHARED_DATA / folder).is_dir()]
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": rf"/(?!{'|'.join(_skip)})plot_\w+\.py$" if _skip else r"/plot_\w+\.py$",
    "image_scrapers": ("gallery_hooks.scrape",),  # every figure, pyplot's or not
    "reset_modules": ("gallery_hooks.reset",),
    "reset_argv": "gallery_hooks.reset_argv",
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
toc_object_entries_show_parents = "hide"  # "fit()" rather than "DeCAFTransformer.fit()" in the page outline
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# Pages without sub-pages get no left sidebar (it would hold only its title) and a wider article.
_single_pages = ["index", "getting_started", "notebooks", "changelog", "api", "auto_examples/index"]
html_sidebars = {page: [] for page in _single_pages}

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
    return "class" if inspect.isclass(obj) else "function" if callable(obj) else "data"


def api_entries():
    """``({section: [(documented name, object)]}, problems)``: each public object once, in its home section.

    An object's section is the public subpackage its code lives in (``CORAL`` lives in ``sk_decaf.domain``
    even if ``sk_decaf.transformers`` re-exports it), else ``sk_decaf`` itself. Its documented name is the
    shortest public path: ``sk_decaf.CORAL`` when ``sk_decaf`` exports it.
    """
    subpackages, problems = _public_subpackages(), []
    exports = {"": [n for n in sk_decaf.__all__ if not n.startswith("_")]}  # "" is sk_decaf itself
    for sub in subpackages:
        module = importlib.import_module(f"sk_decaf.{sub}")
        if not hasattr(module, "__all__"):
            problems.append(f"sk_decaf.{sub} has no __all__: its public names cannot be listed")
        exports[sub] = list(getattr(module, "__all__", []))
    found = {}  # id(object) -> (object, [public paths])
    for sub, names in exports.items():
        module = importlib.import_module(f"sk_decaf.{sub}".rstrip("."))
        for name in names:
            obj = getattr(module, name)
            found.setdefault(id(obj), (obj, []))[1].append(module.__name__ + "." + name)
    entries = {section: [] for section in ["", *subpackages]}
    for obj, paths in found.values():
        where = getattr(obj, "__module__", None) or ""  # constants (a str) have no module: their exporter decides
        home = next((sub for sub in subpackages if where.startswith(f"sk_decaf.{sub}.")), None)
        owners = [path.split(".")[1] for path in paths if path.count(".") == 2]  # subpackages exporting it
        section = home if home in owners else (owners[0] if owners else "")
        entries[section].append((min(paths, key=len), obj))
    return {section: items for section, items in entries.items() if items}, problems


def write_api_page(path):
    """Write the API reference page: one section per subpackage, its docstring, an autosummary per kind."""
    entries, problems = api_entries()
    lines = [
        ".. This page is written by conf.py at every build, from the __all__ of each public subpackage.",
        "",
        "API reference",
        "=============",
        "",
        "Every public name of ``sk_decaf``, by subpackage. Names importable from ``sk_decaf`` itself are "
        "documented under that short name (``sk_decaf.DeCAFTransformer``).",
        "",
    ]
    for section, items in entries.items():
        module = f"sk_decaf.{section}".rstrip(".")
        title = f"``{module}``"
        lines += [title, "-" * len(title), ""]
        if section:  # the subpackage's docstring says what it holds
            lines += [f".. automodule:: {module}", ""]
        else:
            lines += ["Top-level names without a subpackage of their own.", ""]
        lines += [".. currentmodule:: sk_decaf", ""]
        for kind in ("class", "function", "data"):
            names = [name for name, obj in items if _kind(obj) == kind]
            if names:
                template = [] if kind == "data" else [f"   :template: {kind}.rst"]
                lines += [".. autosummary::", "   :toctree: generated/", *template, ""]
                lines += [f"   {name.removeprefix('sk_decaf.')}" for name in names] + [""]
    Path(path).write_text("\n".join(lines))
    return problems


def _resolve_alias(app, env, node, contnode):
    """Resolve ``sk_decaf.sub.Name`` to the page of ``sk_decaf.Name`` (and back): one object, one page."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or "sk_decaf." not in target:
        return None
    target = target[target.index("sk_decaf.") :]
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    for items in _API_ENTRIES.values():
        for name, other in items:
            if other is obj and name != target:
                domain = env.get_domain("py")
                return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], name, node, contnode)
    return None


_API_ENTRIES = {}

# -- scikit-learn's text in inherited docstrings -------------------------------------------------------------
# Inherited methods (get_params, set_output, set_fit_request ...) carry scikit-learn's docstrings, whose
# :term: and :ref: targets live in scikit-learn's documentation. The build is offline (no intersphinx), so
# glossary terms link to scikit-learn's glossary and its labels below become links or plain text.
SKLEARN = "https://scikit-learn.org/stable/"
SKLEARN_LABELS = {
    "metadata_routing": "metadata_routing.html",
    "sphx_glr_auto_examples_miscellaneous_plot_set_output.py": "auto_examples/miscellaneous/plot_set_output.html",
    "accuracy_score": "modules/model_evaluation.html#accuracy-score",
    "df_output_transform": None,  # no stable address: text only
}


def _resolve_sklearn(app, env, node, contnode):
    from docutils import nodes

    if node.get("refdomain") != "std" or node.get("reftype") not in ("term", "ref"):
        return None
    target = node["reftarget"]
    if node["reftype"] == "term":
        url = f"{SKLEARN}glossary.html#term-{nodes.make_id(target)}"
    elif target in SKLEARN_LABELS:
        url = SKLEARN_LABELS[target] and SKLEARN + SKLEARN_LABELS[target]
    else:
        return None  # one of ours: let Sphinx warn
    if url is None:
        return contnode
    return nodes.reference("", "", contnode, refuri=url, internal=False)


_TYPE_LINE = re.compile(r"^(\s*\*\*[^*]+\*\* : )(.*)$")  # numpydoc's rendering of "name : type"
_TRAILING_UNDERSCORE = re.compile(r"(?<![\w`\\])([A-Za-z]\w*[A-Za-z0-9])_(?![\w`])")


def _escape_types(app, what, name, obj, options, lines):
    """Let types say ``(n_samples, n_components_)``: a trailing underscore is a link in reST, escape it."""
    for i, line in enumerate(lines):
        match = _TYPE_LINE.match(line)
        if match and "`" not in match.group(2):
            lines[i] = match.group(1) + _TRAILING_UNDERSCORE.sub(r"\1\\_", match.group(2))


def _on_config_inited(app, config):
    from sphinx.util import logging

    logger = logging.getLogger("sk_decaf.api")
    for problem in write_api_page(HERE / "api.rst"):
        logger.warning(problem)
    _API_ENTRIES.update(api_entries()[0])


def setup(app):
    app.connect("config-inited", _on_config_inited)  # api.rst exists before Sphinx looks for documents
    app.connect("missing-reference", _resolve_alias)
    app.connect("missing-reference", _resolve_sklearn)
    app.connect("autodoc-process-docstring", _escape_types, priority=600)  # after numpydoc (500)
