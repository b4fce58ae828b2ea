"""Installed size of torch in this environment: the CUDA build's NVIDIA libraries against the rest.

On Linux ``pip install torch`` installs the CUDA build, which requires NVIDIA's libraries as separate packages
(``nvidia-*``, ``cuda-*``) and ``triton``; PyTorch's CPU wheels require none of them. This prints, for the torch
and torchvision installed here, the installed size of their files and of every package they require
(recursively, with the extras a requirement names), split into those GPU packages and the rest, and which
build this is; then the installed size of the two environments of a deployment (``docs/deploy.md``): the
runtime (onnxruntime, numpy, Pillow) and the training side (sk-decaf with its ``export`` extra).

Run it in the environment to measure (nothing is downloaded)::

    python benchmarks/bench_install.py
"""

import os
import sys
from importlib import metadata

from packaging.requirements import Requirement

GPU_PREFIXES = ("nvidia-", "cuda-", "triton")
#: The two environments of a deployment: serving the exported model, and training and exporting it.
ENVIRONMENTS = {
    "runtime: onnxruntime, numpy, Pillow": ["onnxruntime", "numpy", "pillow"],
    "training: sk-decaf[export]": ["sk-decaf[export]"],
}


def installed(requirements):
    """``{name: bytes}`` of the installed files of ``requirements`` and of everything they require.

    A requirement's extras count (``cuda-toolkit[cublas]`` requires the cuBLAS package); an installed
    package's own optional extras do not.
    """
    sizes, seen, todo = {}, set(), [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        extras = tuple(sorted(req.extras))
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sizes.setdefault(name, 0)
            continue
        if name not in sizes:
            files = (dist.locate_file(f) for f in dist.files or [])
            sizes[name] = sum(os.path.getsize(p) for p in files if os.path.isfile(p))
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append(sub)
    return sizes


def main():
    import torch

    sizes = installed(["torch", "torchvision"])
    gpu = {n: s for n, s in sizes.items() if n.startswith(GPU_PREFIXES)}
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    print(f"torch {torch.__version__} ({build} build), Python {sys.version.split()[0]}, {sys.platform}")
    print(f"{'torch + torchvision and what they require':<52} {sum(sizes.values()) / 1e9:6.2f} GB installed")
    print(f"{'  of which NVIDIA/CUDA packages and triton':<52} {sum(gpu.values()) / 1e9:6.2f} GB ({len(gpu)} packages)")
    print(f"{'  torch itself':<52} {sizes['torch'] / 1e9:6.2f} GB")
    for name, size in sorted(gpu.items(), key=lambda item: -item[1])[:5]:
        print(f"    {name:<48} {size / 1e9:6.2f} GB")
    print("\ndeployment (docs/deploy.md):")
    for name, requirements in ENVIRONMENTS.items():
        print(f"  {name:<50} {sum(installed(requirements).values()) / 1e6:6.0f} MB")


if __name__ == "__main__":
    main()
