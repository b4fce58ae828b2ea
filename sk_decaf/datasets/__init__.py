"""Dataset loaders: the embedded demo set, any class-per-folder tree, local copies of the benchmarks (no downloads)."""

from ._base import CroppedImages
from ._demo import load_demo, load_image_folder
from ._loaders import (
    load_caltech101,
    load_cub200,
    load_flowers102,
    load_mit67,
    load_office31,
    load_office_caltech10,
    load_pets,
    load_sun397,
)

__all__ = [
    "load_demo",
    "load_image_folder",
    "CroppedImages",
    "load_caltech101",
    "load_cub200",
    "load_flowers102",
    "load_mit67",
    "load_office31",
    "load_office_caltech10",
    "load_pets",
    "load_sun397",
]
