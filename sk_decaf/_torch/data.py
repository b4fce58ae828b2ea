"""Decode and prepare images into uint8 batches with a torch DataLoader.

The loader reads every item with the image reader (:mod:`sk_decaf._images`) and applies a transform built by
:mod:`sk_decaf._torch.preprocess` (which it only uses, never builds). Batches stay uint8 (timm's prefetcher
mode); mean/std normalisation happens inside the network wrapper, so four times fewer bytes cross process
boundaries and the GPU does the arithmetic.

A bad item never stops a batch: its error travels with the batch as data, so the caller keeps every good
row and decides whether to raise or to mark the bad rows.
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset

from .._images import ImageLoadError, describe, load_rgb

__all__ = ["ImageDataset", "make_loader", "iterate", "resolve_workers"]


class ImageDataset(Dataset):
    """``items[i]`` -> ``(uint8 tensor or None, i, error message or None)``.

    Errors are returned, not raised, so the main process can report a clean ``ImageLoadError`` that
    names the image's index and path, whichever worker decoded it, and keep the batch's other images.
    """

    def __init__(self, items, transform, indices=None):
        self.items = items
        self.transform = transform
        self.draft = getattr(transform, "draft_size", None)
        self.indices = list(range(len(items))) if indices is None else list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        i = self.indices[k]
        try:
            item = self.items[i]  # a lazy sequence may fail here: it is reported like a bad file
        except Exception as exc:
            return None, i, f"image {i}: cannot read: {type(exc).__name__}: {exc}"
        try:
            img = load_rgb(item, i, draft=self.draft)
            return self.transform(img), i, None
        except ImageLoadError as exc:
            return None, i, str(exc)
        except Exception as exc:  # a transform failing on a degenerate image, e.g. 0-sized crop
            return None, i, f"{describe(item, i)}: preprocessing failed: {type(exc).__name__}: {exc}"


def _collate(batch):
    """Stack the good images of a batch; bad ones travel along as ``[(index, message), ...]``."""
    good = [(t, i) for t, i, error in batch if error is None]
    errors = [(i, error) for _, i, error in batch if error is not None]
    images = torch.stack([t for t, _ in good]) if good else None
    return images, torch.tensor([i for _, i in good], dtype=torch.long), errors


def iterate(loader):
    """Yield ``(uint8 batch or None, indices, errors)`` from a loader made by :func:`make_loader`.

    ``errors`` lists ``(index, message)`` for the batch's items that could not be decoded; ``indices``
    are those of the images in the batch, which is ``None`` when every item failed.
    """
    yield from loader


def resolve_workers(n_jobs, n_items, batch_size, device_type="cpu"):
    """Number of DataLoader worker processes for ``n_jobs``.

    ``None`` decides by device: on the CPU the network already keeps every core busy, so decoding stays
    in the main process below 8 cores (one worker per 8 cores above, at most 4); on a GPU, decoding is the
    bottleneck and gets up to 8 workers. ``1`` decodes in the main process, ``-1`` uses every core. Fewer
    than two batches never pay for worker start-up.
    """
    cpus = os.cpu_count() or 1
    if n_items <= batch_size:
        return 0
    if n_jobs is None:
        return min(4, cpus // 8) if device_type == "cpu" else min(8, max(cpus - 1, 0))
    workers = cpus + 1 + n_jobs if n_jobs < 0 else n_jobs
    return 0 if workers <= 1 else workers


def make_loader(items, transform, *, indices=None, batch_size=32, n_jobs=None, device_type="cpu", workers=None):
    """A DataLoader over ``items`` (optionally a subset ``indices``); read it with :func:`iterate`.

    ``workers`` sets the number of worker processes directly (0: the main process), overriding ``n_jobs``.
    """
    dataset = ImageDataset(items, transform, indices)
    if workers is None or len(dataset) <= batch_size:
        workers = resolve_workers(n_jobs, len(dataset), batch_size, device_type)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device_type == "cuda",
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
        # Each iteration draws a seed for its workers: from a generator of its own, never from torch's global
        # one, which another thread may be drawing a network's seeded random weights from (and the user's).
        generator=torch.Generator(),
    )
