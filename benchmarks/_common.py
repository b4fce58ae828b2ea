"""Helpers shared by the benchmarks: fresh worker processes, their peak memory, image lists, agreement checks.

A benchmark script runs each contender as ``python <script> --worker NAME --result-dir DIR [its options]``:
a fresh interpreter, so no contender inherits another's loaded network, allocator or thread pools. The
driver samples the memory of that process *and of every process it starts* (DataLoader workers) while it
runs; the worker writes its figures to ``DIR/NAME.json`` and its features to ``DIR/NAME.npy``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

__all__ = ["demo_paths", "warm_files", "run_worker", "write_result", "agreement", "format_table", "elapsed"]


def demo_paths(repeat=1, limit=None):
    """The embedded demo images (200 paths) ``repeat`` times, cut to the first ``limit`` when given."""
    from sk_decaf.datasets import load_demo

    paths = list(load_demo().paths) * repeat
    return paths[:limit] if limit else paths


def warm_files(paths):
    """Read every file once, so that every contender finds the OS file cache equally warm."""
    for path in set(paths):
        with open(path, "rb") as f:
            f.read()


def _tree_memory_bytes(proc):
    """Memory of ``proc`` and all its descendants now: summed PSS (shared pages split between the
    processes that share them, so forked workers do not count the parent's libraries twice), or RSS
    where PSS cannot be read."""
    import psutil

    total = 0
    try:
        family = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in family:
        try:
            total += p.memory_full_info().pss
        except (psutil.AccessDenied, AttributeError):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        except psutil.Error:  # the process ended between listing and reading
            pass
    return total


def run_worker(script, name, argv, result_dir, interval=0.05):
    """Run ``script --worker name`` in a fresh interpreter; return ``(result dict, peak memory in MB)``.

    The peak memory is the largest sum over the worker and its child processes, sampled every
    ``interval`` seconds for the worker's whole life (imports, start-up and the timed pass).
    """
    try:
        import psutil
    except ImportError:
        raise SystemExit("the benchmarks sample memory with psutil: pip install psutil") from None

    cmd = [sys.executable, script, *argv, "--worker", name, "--result-dir", result_dir]
    popen = subprocess.Popen(cmd)
    proc = psutil.Process(popen.pid)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_memory_bytes(proc))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    returncode = popen.wait()
    done.set()
    sampler.join()
    if returncode != 0:
        raise SystemExit(f"contender {name!r} failed (exit code {returncode}): {' '.join(cmd)}")
    with open(os.path.join(result_dir, f"{name}.json")) as f:
        result = json.load(f)
    return result, peak / 2**20


def write_result(result_dir, name, features=None, **figures):
    """Worker side of :func:`run_worker`: figures to ``NAME.json``, features (if any) to ``NAME.npy``."""
    if features is not None:
        np.save(os.path.join(result_dir, f"{name}.npy"), np.asarray(features, dtype=np.float32))
    with open(os.path.join(result_dir, f"{name}.json"), "w") as f:
        json.dump(figures, f)


def agreement(features, reference, rtol=1e-3, atol=1e-4):
    """``(agrees, max |features - reference|)`` under ``np.allclose(rtol, atol)``; a shape mismatch fails."""
    if features.shape != reference.shape:
        return False, float("inf")
    return bool(np.allclose(features, reference, rtol=rtol, atol=atol)), float(np.abs(features - reference).max())


def format_table(header, rows):
    """Left-align the first column, right-align the others; return the lines of a plain-text table."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(row[0]).ljust(widths[0])] + [str(c).rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return lines


def elapsed(start):
    """Seconds since ``start`` (a ``time.perf_counter()`` value)."""
    return time.perf_counter() - start
