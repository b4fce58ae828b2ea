"""Turn a ``device`` parameter into a ``torch.device``, or a ``ValueError`` that names it and says what works."""

from __future__ import annotations

import difflib

import torch

__all__ = ["resolve_device"]

#: Device names people write that torch does not know, and what they mean.
_ALIASES = {"gpu": "cuda", "nvidia": "cuda", "cuda_0": "cuda:0", "gpu:0": "cuda:0", "apple": "mps", "metal": "mps"}
_KNOWN = ("auto", "cpu", "cuda", "mps")


def _suggestion(text):
    lowered = text.strip().lower()
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    if lowered.startswith("gpu:"):
        return "cuda:" + lowered[4:]
    close = difflib.get_close_matches(lowered, _KNOWN, n=1, cutoff=0.5)
    return close[0] if close else None


def _available(kind):
    """Whether this torch build and machine have a device of ``kind`` (``"cuda"``, ``"mps"``, ``"xpu"`` ...)."""
    if kind == "cpu":
        return True
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    backend = getattr(torch, kind, None)
    return bool(backend is not None and hasattr(backend, "is_available") and backend.is_available())


def resolve_device(device, name="device"):
    """``"auto"`` -> CUDA when present, else the CPU; anything else checked and returned as ``torch.device``.

    Raises
    ------
    ValueError
        Naming the parameter ``name`` when ``device`` is not a device torch knows (with the closest
        valid name, e.g. ``"cuda"`` for ``"gpu"``), or is not present on this machine.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        hint = _suggestion(str(device))
        raise ValueError(
            f"{name}={device!r} is not a device. Use 'auto' (CUDA when present, else the CPU), 'cpu', 'cuda' "
            f"or 'cuda:<index>'" + (f"; did you mean {name}={hint!r}?" if hint else ".")
        ) from None
    if not _available(resolved.type):
        raise ValueError(
            f"{name}={str(resolved)!r} was requested but this machine has no {resolved.type.upper()} device "
            f"(torch {torch.__version__}); use {name}='auto' or {name}='cpu'."
        )
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(
            f"{name}={str(resolved)!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered "
            f"from 0; use {name}='cuda' for the first."
        )
    return resolved
