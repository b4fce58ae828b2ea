"""
Deploy a fitted pipeline as one ONNX graph
==========================================

A pipeline fitted in a notebook, DeCAF features of EfficientNet-Lite0 → :class:`~sk_decaf.SignedSqrt` →
:class:`~sklearn.svm.LinearSVC`, is written by :func:`sk_decaf.to_onnx` as one ONNX file that goes from uint8
images to labels and decision values. It is then served by ``sk_decaf/deploy/runtime.py`` — one file that
needs only onnxruntime, numpy and Pillow — in a process where ``import torch``, ``timm`` and ``sklearn``
fail, and its answers are compared with the pipeline's. Last, the sizes that matter for a deployment: the
model file, the minimal runtime environment and the training environment.

Run ``python examples/plot_deploy.py [--output DIR]``; the figure is saved in ``DIR`` (default: a new
temporary folder).
"""

# %%
# Fit and export
# --------------
# Half of the embedded demo set (10 Caltech-101 classes) trains the pipeline; ``X=`` checks the exported
# model against the pipeline on a few images before the file is written.
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata

import matplotlib.pyplot as plt
import numpy as np
from packaging.requirements import Requirement
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

import sk_decaf.deploy.runtime as runtime
from sk_decaf import DeCAFTransformer, SignedSqrt, to_onnx
from sk_decaf.datasets import load_demo

parser = argparse.ArgumentParser(description="Export a DeCAF pipeline to ONNX and serve it without torch.")
parser.add_argument("--output", default=None, help="folder for the model and the figure (default: a temporary one)")
args, _ = parser.parse_known_args()  # known options only: the gallery and Jupyter pass their own
output = args.output or tempfile.mkdtemp(prefix="sk_decaf_deploy_")
os.makedirs(output, exist_ok=True)

data = load_demo()
names = np.asarray(data.target_names, dtype=object)
train, test = data.paths[::2], data.paths[1::2]
pipe = make_pipeline(DeCAFTransformer(), SignedSqrt(), LinearSVC())
pipe.fit(train, names[data.target[::2]])
model_path = os.path.join(output, "model.onnx")
model = to_onnx(pipe, model_path, X=test[::10])
preprocessing = runtime.read_metadata(model_path)[runtime.PREPROCESS_KEY]
print(
    f"{model_path}: {os.path.getsize(model_path) / 1e6:.1f} MB, outputs {[o.name for o in model.graph.output]}, "
    f"preprocessing {preprocessing}"
)

# %%
# Serve it without torch, timm or scikit-learn
# --------------------------------------------
# ``runtime.py`` is copied next to the model and run in a fresh interpreter whose start-up makes those
# imports (and ``sk_decaf``) raise ``ImportError``. It prints ``image<TAB>label<TAB>score``.
blocker = tempfile.mkdtemp(prefix="sk_decaf_blocker_")
with open(os.path.join(blocker, "sitecustomize.py"), "w") as f:
    f.write(
        "import sys\n"
        "class Blocker:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'timm', 'sklearn', 'scipy', 'sk_decaf'}:\n"
        "            raise ImportError(name + ' is not installed here')\n"
        "sys.meta_path.insert(0, Blocker())\n"
    )
shutil.copy(runtime.__file__, os.path.join(output, "runtime.py"))
done = subprocess.run(
    [sys.executable, os.path.join(output, "runtime.py"), model_path, *test, "--json"],
    env={"PYTHONPATH": blocker, "PATH": os.environ.get("PATH", "")},
    capture_output=True,
    text=True,
    check=True,
)
rows = [json.loads(line) for line in done.stdout.splitlines()]
served_labels = np.array([row["label"] for row in rows], dtype=object)
served_scores = np.array([row["decision_function"] for row in rows])
expected = pipe.decision_function(test)
print(
    f"{len(test)} test images: labels identical: {bool((served_labels == pipe.predict(test)).all())}; "
    f"largest relative score difference {np.abs(served_scores - expected).max() / np.abs(expected).max():.1e}; "
    f"accuracy {np.mean(served_labels == names[data.target[1::2]]):.3f}"
)


# %%
# Sizes
# -----
# The environments are measured as the installed files of their packages and of everything these require
# (recursively, with the extras a requirement names: ``cuda-toolkit[cublas]`` requires the cuBLAS package), in
# this Python installation (``benchmarks/bench_install.py`` prints the same, package by package).
def installed_size(requirements):
    """Bytes of the installed files of ``requirements`` and their dependencies; also their names."""
    seen, names, todo, total = set(), set(), [Requirement(r) for r in requirements], 0
    while todo:
        req = todo.pop()
        name, extras = req.name.lower().replace("_", "-"), tuple(sorted(req.extras))
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name not in names:
            names.add(name)
            total += sum(os.path.getsize(p) for p in (dist.locate_file(f) for f in dist.files or []) if p.is_file())
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append(sub)
    return total, sorted(names)


sizes = {"model": os.path.getsize(model_path)}
sizes["runtime: onnxruntime, numpy, Pillow"], runtime_packages = installed_size(["onnxruntime", "numpy", "pillow"])
sizes["training: sk-decaf[export]"], _ = installed_size(["sk-decaf[export]"])
print(f"runtime packages: {', '.join(runtime_packages)}")
for name, size in sizes.items():
    print(f"  {name:<38} {size / 1e6:9.1f} MB")

fig, ax = plt.subplots(figsize=(7, 2.6))
ax.barh(list(sizes)[::-1], [size / 1e6 for size in sizes.values()][::-1], color=["#4c72b0", "#55a868", "#c44e52"])
ax.set_xscale("log")
ax.set_xlim(right=max(sizes.values()) / 1e6 * 5)  # room for the labels
ax.set_xlabel("MB (log scale)")
ax.set_title("What a deployment carries")
for y, size in enumerate(list(sizes.values())[::-1]):
    ax.text(size / 1e6 * 1.1, y, f"{size / 1e6:.0f} MB", va="center")
fig.tight_layout()
fig.savefig(os.path.join(output, "deploy_sizes.png"), dpi=120)
print(f"figure: {os.path.join(output, 'deploy_sizes.png')}")
