"""Data: the embedded offline brain data set, acquisition presets, masks, coils, NIfTI I/O.

Example::

    >>> from kspace_attacks.data import demo_batch, get_preset
    >>> x, y, physics = demo_batch(2, preset="embedded")
    >>> get_preset("paper").img_size
    256
"""

from .coils import birdcage_maps
from .embedded import EmbeddedBrain, demo_batch, load_embedded
from .masks import deepinv_mask, paper_mask
from .nifti import SHIPPED_VOLUMES, NiftiSlices, load_nifti_slices, shipped_volume, unseen_brain
from .presets import Preset, get_preset, list_presets
from .synth import CONTRASTS, augment, synthesize

__all__ = [
    "CONTRASTS",
    "EmbeddedBrain",
    "NiftiSlices",
    "Preset",
    "SHIPPED_VOLUMES",
    "augment",
    "birdcage_maps",
    "deepinv_mask",
    "demo_batch",
    "get_preset",
    "list_presets",
    "load_embedded",
    "load_nifti_slices",
    "paper_mask",
    "shipped_volume",
    "synthesize",
    "unseen_brain",
]

from .fastmri import (  # noqa: E402  (fastmri itself is imported lazily inside)
    CorruptFastMRIFileError,
    FastMRIFileError,
    FastMRISlices,
    PerturbedKSpace,
    read_fastmri_slice,
    read_perturbed_kspace,
    write_fastmri_file,
    write_perturbed_kspace,
)

__all__ += [
    "CorruptFastMRIFileError",
    "FastMRIFileError",
    "FastMRISlices",
    "PerturbedKSpace",
    "read_fastmri_slice",
    "read_perturbed_kspace",
    "write_fastmri_file",
    "write_perturbed_kspace",
]
