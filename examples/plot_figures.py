"""
DeCAF's figures on the demo set: time per layer and t-SNE of two layers
=======================================================================

Two figures of Donahue et al. (2014), reproduced with :mod:`sk_decaf` on the embedded demo set (10
Caltech-101 classes x 20 images):

* **Fig. 3, time per layer.** :func:`~sk_decaf.evaluation.profile_layers` runs the whole network on a
  batch of 10 real, preprocessed images (DeCAF times batches of 10) and measures each layer with forward
  hooks; :func:`~sk_decaf.plotting.plot_layer_times` draws the bars and the pie per layer type. We
  profile EfficientNet-Lite0 (the default backbone, its ImageNet weights ship with sk_decaf) and
  DeCAF's own architecture, AlexNet, with random weights: its ImageNet weights need a download, and
  timing does not depend on the values of the weights. The script prints the share of each layer
  type: on 2 CPU cores the convolutions and fully connected layers of AlexNet took about three
  quarters of the time (DeCAF's Fig. 3 shows the same dominance), and the convolutions of
  EfficientNet-Lite0 about 70 %, its batch norms and ReLU6 most of the rest.
* **Fig. 1, t-SNE.** Features of an early layer (``blocks.2``) and of the generic layer
  (``pre_logits``) embedded in 2-D by :func:`~sk_decaf.plotting.plot_tsne`: the classes separate in the
  deep layer, much less in the early one, as DeCAF1 vs. DeCAF6 in the paper.

Run ``python examples/plot_figures.py [--output DIR]``; figures are saved as PNG in ``DIR`` (default: a
new temporary folder).
"""

import argparse
import os
import tempfile

import numpy as np

from sk_decaf import DeCAFTransformer, profile_layers
from sk_decaf.datasets import load_demo
from sk_decaf.plotting import plot_layer_times, plot_tsne


def type_shares(profile):
    """Share of the time per layer type, in percent."""
    total = profile.seconds.sum()
    types = np.asarray(profile.types)
    return {t: 100 * profile.seconds[types == t].sum() / total for t in dict.fromkeys(profile.types)}


def main(argv=None):
    parser = argparse.ArgumentParser(description="DeCAF Fig. 3 and Fig. 1 on the embedded demo set.")
    parser.add_argument("--output", default=None, help="folder for the figures (default: a temporary one)")
    parser.add_argument("--batch-size", type=int, default=10, help="images per timed forward pass")
    args = parser.parse_args(argv)
    output = args.output or tempfile.mkdtemp(prefix="sk_decaf_example_")
    os.makedirs(output, exist_ok=True)
    data = load_demo()

    # Fig. 3: time per layer.
    for backbone, weights in (("efficientnet_lite0", None), ("alexnet", "random")):
        decaf = DeCAFTransformer(backbone, weights=weights, random_state=0)
        profile = profile_layers(decaf, data.paths, batch_size=args.batch_size, n_repeats=3)
        shares = ", ".join(f"{t} {s:.1f} %" for t, s in type_shares(profile).items())
        print(f"{backbone}: {len(profile.layers)} layers, {1000 * profile.seconds.sum():.0f} ms in layers "
              f"of a {1000 * profile.total_seconds:.0f} ms forward pass of {args.batch_size} images "
              f"({profile.device}); {shares}")
        slowest = np.argsort(profile.seconds)[::-1][:3]
        print("  slowest: " + ", ".join(
            f"{profile.layers[i]} ({profile.modules[i]}, {1000 * profile.seconds[i]:.1f} ms)" for i in slowest))
        path = os.path.join(output, f"layer_times_{backbone}.png")
        plot_layer_times(profile).savefig(path, dpi=100)
        print(f"  saved {path}")

    # Fig. 1: t-SNE of an early and the generic layer, from one forward pass per image.
    from matplotlib.figure import Figure

    with tempfile.TemporaryDirectory() as tmp:
        decaf = DeCAFTransformer(layer=["blocks.2", "pre_logits"], cache=os.path.join(tmp, "act.sqlite"))
        features = decaf.fit_transform(data.paths)
    split = decaf.feature_dims_["blocks.2"]
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, name, block in zip(axes, decaf.layers_, (features[:, :split], features[:, split:])):
        plot_tsne(block, data.target, label_names=data.target_names, legend=ax is axes[1], ax=ax)
        ax.set_title(f"{name} ({block.shape[1]} features)")
    path = os.path.join(output, "tsne_layers.png")
    fig.savefig(path, dpi=100)
    print(f"t-SNE of {', '.join(decaf.layers_)} saved to {path}")


if __name__ == "__main__":
    main()
