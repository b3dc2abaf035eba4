"""fastMRI ``.h5`` files in and out, converted to deepinv's tensor layout at this boundary.

fastMRI stores one volume per HDF5 file (``S`` slices, ``N`` coils):

* ``kspace``: ``(S, H, W)`` single-coil or ``(S, N, H, W)`` multi-coil, complex64, centred
  (``fastmri.fft2c`` convention, identical to deepinv's centred orthonormal FFT). It is
  **fully sampled** in train/val files; it is undersampled only when a ``mask`` dataset exists
  (test/challenge files).
* ``mask``: ``(W,)`` sampled phase-encode columns (test/challenge files only).
* ``reconstruction_esc`` (single-coil) / ``reconstruction_rss`` (multi-coil): ``(S, 320, 320)``
  float32 magnitude targets (centre crop of ``|ifft(kspace)|`` / coil RSS).
* ``ismrmrd_header``: XML bytes with the encoded / recon matrix sizes and encoding limits.
* attrs ``acquisition``, ``max``, ``norm``, ``patient_id``; test files also ``acceleration``,
  ``num_low_frequency``.

Inside kspace-attacks everything is deepinv layout: real tensors with real/imag in dim 1,
``y`` ``(B, 2, H, W)`` or ``(B, 2, N, H, W)``, ``x`` ``(B, 2, H, W)`` or ``(B, 1, H, W)``,
physics :class:`deepinv.physics.MRI` / :class:`deepinv.physics.MultiCoilMRI`.

Files written here may carry two extensions: the extra datasets of
:func:`write_perturbed_kspace` (``kspace_clean``, ``coil_maps``, ``x_clean``; standard readers
ignore them) and, only when a mask is not a set of full columns, a ``mask`` of shape ``(H, W)``
or ``(S, H, W)`` (read here; fastMRI's and deepinv's transforms only understand ``(W,)``).
Writes are atomic (:func:`kspace_attacks.io.atomic_path`), so an interrupted run never leaves
a half-written result.

Modules, one job each: :mod:`.errors` (exceptions), :mod:`.layout` (fastMRI <-> deepinv array
and mask layouts), :mod:`.attrs` (HDF5 attr encoding), :mod:`.files` (opening / validating
files, per-file summary, ISMRMRD header), :mod:`.coil_maps` (coil-map estimation),
:mod:`.read` (one slice as ``(x, y, physics)``), :mod:`.dataset` (:class:`FastMRISlices`),
:mod:`.write` (:func:`write_fastmri_file`), :mod:`.perturbed` (attacked k-space files) and
:mod:`.interop` (the optional ``fastmri`` package, imported lazily: only
:func:`fastmri_slice_dataset` needs it).
"""

from kspace_attacks.data.fastmri.coil_maps import estimate_coil_maps
from kspace_attacks.data.fastmri.dataset import FastMRISlices
from kspace_attacks.data.fastmri.errors import CorruptFastMRIFileError, FastMRIFileError
from kspace_attacks.data.fastmri.files import (
    FastMRIFileInfo,
    inspect_fastmri_file,
    make_ismrmrd_header,
)
from kspace_attacks.data.fastmri.interop import fastmri_slice_dataset, require_fastmri
from kspace_attacks.data.fastmri.layout import deepinv_to_fastmri, fastmri_to_deepinv
from kspace_attacks.data.fastmri.perturbed import (
    PerturbedKSpace,
    read_perturbed_kspace,
    write_perturbed_kspace,
)
from kspace_attacks.data.fastmri.read import read_fastmri_slice
from kspace_attacks.data.fastmri.write import write_fastmri_file

__all__ = [
    "CorruptFastMRIFileError",
    "FastMRIFileError",
    "FastMRIFileInfo",
    "FastMRISlices",
    "PerturbedKSpace",
    "deepinv_to_fastmri",
    "estimate_coil_maps",
    "fastmri_slice_dataset",
    "fastmri_to_deepinv",
    "inspect_fastmri_file",
    "make_ismrmrd_header",
    "read_fastmri_slice",
    "read_perturbed_kspace",
    "require_fastmri",
    "write_fastmri_file",
    "write_perturbed_kspace",
]
