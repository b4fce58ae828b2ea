"""The figures of DeCAF and Azizpour et al.: t-SNE, layer sweeps, few-shot curves, time per layer (matplotlib)."""

from ._plots import plot_few_shot, plot_layer_sweep, plot_layer_times, plot_tsne

__all__ = ["plot_few_shot", "plot_layer_sweep", "plot_layer_times", "plot_tsne"]
