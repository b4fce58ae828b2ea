"""
DeCAF's figures on the demo set: time per layer and t-SNE of two layers
=======================================================================

Two figures of Donahue et al. (2014), reproduced with :mod:`sk_decaf` on the embedded demo set (10
Caltech-101 classes x 20 images):

* **Fig. 3, time per layer.** :func:`~sk_decaf.evaluation.profile_layers` runs the whole network on a
  batch of 10 real, preprocessed images (DeCAF times batches of 10) and measures each layer with forward
  hooks; :func:`~sk_decaf.plotting.plot_layer_times` draws the bars and the pie per layer type.
* **Fig. 1, t-SNE.** Features of an early layer (``blocks.2``) and of the generic layer (``pre_logits``)
  embedded in 2-D by :func:`~sk_decaf.plotting.plot_tsne`.

Run ``python examples/plot_figures.py [--output DIR]``: the figures are saved as PNG in ``DIR`` (default:
a new temporary folder).
"""

# %%
# The demo set
# ------------
# The images ship with sk_decaf, so this example runs offline.
import argparse
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from sk_decaf import DeCAFTransformer, profile_layers
from sk_decaf.datasets import load_demo
from sk_decaf.plotting import plot_layer_times, plot_tsne

data = load_demo()
print(f"{len(data.paths)} images of {len(data.target_names)} classes: {', '.join(data.target_names)}")


# %%
# Fig. 3: time per layer
# ----------------------
# We profile EfficientNet-Lite0 (the default backbone, its ImageNet weights ship with sk_decaf) and DeCAF's
# own architecture, AlexNet, with random weights: its ImageNet weights need a download, and timing does not
# depend on the values of the weights. Each layer's own time excludes the layers nested in it; the pie sums
# the time per layer type.
def type_shares(profile):
    """Share of the time per layer type, in percent."""
    total = profile.seconds.sum()
    types = np.asarray(profile.types)
    return {t: 100 * profile.seconds[types == t].sum() / total for t in dict.fromkeys(profile.types)}


def profile(backbone, weights=None, batch_size=10):
    """Print where one forward pass of `batch_size` demo images spends its time; return the figure."""
    decaf = DeCAFTransformer(backbone, weights=weights, random_state=0)
    result = profile_layers(decaf, data.paths, batch_size=batch_size, n_repeats=3)
    shares = ", ".join(f"{t} {s:.1f} %" for t, s in type_shares(result).items())
    print(
        f"{backbone}: {len(result.layers)} layers, {1000 * result.seconds.sum():.0f} ms in layers of a "
        f"{1000 * result.total_seconds:.0f} ms forward pass of {batch_size} images ({result.device}); {shares}"
    )
    slowest = np.argsort(result.seconds)[::-1][:3]
    print(
        "  slowest: "
        + ", ".join(f"{result.layers[i]} ({result.modules[i]}, {1000 * result.seconds[i]:.1f} ms)" for i in slowest)
    )
    return plot_layer_times(result)


fig_lite0 = profile("efficientnet_lite0")

# %%
# The convolutions of EfficientNet-Lite0 take most of the time, its batch norms and ReLU6 most of the rest.
# In AlexNet the convolutions and the fully connected layers dominate, as in DeCAF's Fig. 3 (on 2 CPU
# cores they took about three quarters of the time).
fig_alexnet = profile("alexnet", weights="random")

# %%
# Fig. 1: t-SNE of an early and of the generic layer
# --------------------------------------------------
# One forward pass per image gives both layers (``layer`` is a list; the columns of the two layers are
# concatenated). The classes separate in the deep layer, much less in the early one, as DeCAF1 vs. DeCAF6
# in the paper.
with tempfile.TemporaryDirectory() as tmp:
    decaf = DeCAFTransformer(layer=["blocks.2", "pre_logits"], cache=os.path.join(tmp, "act.sqlite"))
    features = decaf.fit_transform(data.paths)
split = decaf.feature_dims_["blocks.2"]
fig_tsne, axes = plt.subplots(1, 2, figsize=(12, 5.5), layout="constrained")
for ax, name, block in zip(axes, decaf.layers_, (features[:, :split], features[:, split:])):
    plot_tsne(block, data.target, label_names=data.target_names, legend=ax is axes[1], ax=ax)
    ax.set_title(f"{name} ({block.shape[1]} features)")

# %%
# Saving the figures
# ------------------
# Run as a script, the example writes the three figures as PNG files (``--output DIR``, or a new temporary
# folder).
parser = argparse.ArgumentParser(description="DeCAF Fig. 3 and Fig. 1 on the embedded demo set.")
parser.add_argument("--output", default=None, help="folder for the figures (default: a temporary one)")
args, _ = parser.parse_known_args()
output = args.output or tempfile.mkdtemp(prefix="sk_decaf_example_")
os.makedirs(output, exist_ok=True)
for name, fig in {
    "layer_times_efficientnet_lite0": fig_lite0,
    "layer_times_alexnet": fig_alexnet,
    "tsne_layers": fig_tsne,
}.items():
    fig.savefig(os.path.join(output, f"{name}.png"), dpi=100)
print(f"figures saved to {output}")
