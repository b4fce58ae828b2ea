"""pytest in docs/: doctest the Markdown pages only, not the Sphinx configuration or the build outputs."""

collect_ignore = ["conf.py", "sphinxext"]
collect_ignore_glob = ["_build/*", "generated/*", "auto_examples/*", "notebooks/*"]
