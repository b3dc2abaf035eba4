"""The embedded offline brain data set (MNI ICBM152 2009a slices) as a torch Dataset.

The package ships ``embedded_brain_64.npz`` (116 axial slices, 64x64, about 0.5 MB; see
``NOTICE-MNI-ICBM152.txt``). Other sizes (e.g. 256 for the ``paper`` preset) are built from
the nilearn wheel on first use and cached in ``$KSPACE_ATTACKS_CACHE`` (default
``~/.cache/kspace_attacks``); without nilearn, the 64x64 maps are upsampled (with a warning).

Example::

    >>> from kspace_attacks.data import EmbeddedBrain
    >>> ds = EmbeddedBrain("test")
    >>> x, y = ds[0]
    >>> x.shape, y.shape, len(ds)
    (torch.Size([2, 64, 64]), torch.Size([2, 64, 64]), 70)
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .._checks import check_choice, check_positive_int
from .build import BLOCK, SPLITS
from .presets import Preset, get_preset
from .synth import CONTRASTS, Augmentation, augment, synthesize

__all__ = ["DATA_FILE", "SUBJECT", "EmbeddedBrain", "anatomical_blocks", "cache_dir", "demo_batch",
           "load_embedded", "split_slices"]

DATA_FILE = Path(__file__).with_name("embedded_brain_64.npz")
#: Subject id of every embedded item: all are slices of one template brain (MNI ICBM152 2009a).
SUBJECT = "icbm152"
SHIPPED_SIZE = 64
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where built sizes other than 64 are cached."""
    return Path(os.environ.get("KSPACE_ATTACKS_CACHE", Path.home() / ".cache" / "kspace_attacks"))


def _read(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@lru_cache(maxsize=4)
def _load(size: int) -> dict[str, np.ndarray]:
    if size == SHIPPED_SIZE:
        return _read(DATA_FILE)
    path = cache_dir() / f"embedded_brain_{size}.npz"
    from .build import FORMAT_VERSION, save_embedded, template_dir

    if path.is_file():
        arrays = _read(path)
        if int(arrays.get("format_version", -1)) == FORMAT_VERSION:
            return arrays  # otherwise stale (built by an older version): rebuild

    have_nibabel = importlib.util.find_spec("nibabel") is not None
    if template_dir() is not None and have_nibabel:
        try:
            return _read(save_embedded(path, size))
        except OSError:  # read-only home: build in memory
            from .build import build_embedded

            return build_embedded(size)
    warnings.warn(
        f"nilearn's ICBM152 files or nibabel not found; upsampling the "
        f"{SHIPPED_SIZE}x{SHIPPED_SIZE} maps to {size}x{size} (blurry); for native resolution: "
        f"`pip install nibabel; pip install --no-deps nilearn`",
        stacklevel=3,
    )
    arrays = dict(_read(DATA_FILE))
    for key in ("t1", "gm", "wm", "brain"):
        t = torch.from_numpy(arrays[key]).float()[:, None]
        t = F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)
        arrays[key] = t[:, 0].clamp(0, 255).round().to(torch.uint8).numpy()
    arrays["size"] = np.array(size, dtype=np.int32)
    return arrays


def load_embedded(size: int = SHIPPED_SIZE) -> dict[str, np.ndarray]:
    """The embedded arrays at resolution ``size`` (cached; do not modify them in place).

    Keys: ``t1, gm, wm, brain`` uint8 (N, size, size) (value / 255), ``z`` (template slice
    index), ``split`` (code into ``split_names`` = train, val, test), ``source``, ``notice``,
    ``citations``.
    """
    check_positive_int("size", size, minimum=4)
    with _LOCK:
        return _load(size)


def split_slices(codes: np.ndarray, z: np.ndarray, split: str) -> np.ndarray:
    """Rows of the shipped arrays in ``split``. Training: the stored training blocks. Test: the
    held-out (val and test) slices at least 2 slices from every training slice, taken along z
    skipping each one's neighbour, so that no test slice is adjacent to another or to anything a
    model trained on. Val: the remaining held-out slices (used only to watch training).

    >>> codes = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 0]); z = np.arange(10)
    >>> split_slices(codes, z, "test").tolist(), split_slices(codes, z, "val").tolist()
    ([3, 5, 7], [2, 4, 6, 8])
    """
    check_choice("split", split, SPLITS)
    train = np.nonzero(codes == SPLITS.index("train"))[0]
    if split == "train":
        return train
    held = np.nonzero(codes != SPLITS.index("train"))[0]
    held = held[np.argsort(z[held], kind="stable")]
    z_train = z[train]
    test: list[int] = []
    for row in held:
        far = z_train.size == 0 or np.abs(z_train - z[row]).min() >= 2
        if far and (not test or z[row] - z[test[-1]] >= 2):
            test.append(int(row))
    chosen = np.array(test, dtype=int) if split == "test" else np.setdiff1d(held, test)
    return np.sort(chosen)


def anatomical_blocks(z: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Block id of every slice: consecutive runs of ``block`` kept slices along z (the units the
    splits are made of), numbered from the bottom of the brain.

    >>> anatomical_blocks(np.array([30, 31, 32, 33]), block=2).tolist()
    [0, 0, 1, 1]
    """
    order = np.argsort(np.argsort(z, kind="stable"), kind="stable")
    return (order // block).astype(int)


def _maps(arrays: dict[str, np.ndarray], i: int) -> Tensor:
    t1, gm, wm, brain = (
        torch.from_numpy(arrays[k][i]).float() / 255 for k in ("t1", "gm", "wm", "brain")
    )
    csf = (brain - gm - wm).clamp(0, 1)
    return torch.stack([t1, gm, wm, csf, brain])


def _item_seed(seed: int, z: int, contrast: str, sample: int, augmented: bool) -> int:
    # Keyed by anatomy (z) and contrast name, so an image does not depend on which other
    # contrasts or slices a data set holds.
    ss = np.random.SeedSequence([seed, z, CONTRASTS.index(contrast), sample, int(augmented)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


class EmbeddedBrain(Dataset):
    """Synthetic brain MR images from the ICBM152 template, with simulated k-space.

    Item ``i`` is ``(x, y)``: ``x`` (2, H, W) ground truth (real/imag, magnitude in [0, 1],
    max-normalized) and ``y = preset.simulate(x)``: (2, H, W), or (2, N, H, W) with N coils.
    Everything is a deterministic function of ``(seed, slice, contrast, sample)``.

    ``len(ds) = n_slices(split) * len(contrasts) * samples_per_slice``; at 64x64 the splits hold
    80 / 22 / 14 slices (train / val / test), so the defaults give 80*5*8 = 3200 training,
    110 validation and 70 test items. Items are ordered slice-major (then contrast, then sample).

    :param str split: ``"train"``, ``"val"`` or ``"test"`` (disjoint). Training slices are
        contiguous blocks of z (:func:`~kspace_attacks.data.build.assign_splits`); the held-out
        blocks give the 14 test slices, spread over five blocks of the whole brain, none adjacent
        to another or to a training slice (:func:`split_slices`); the other 22 held-out slices
        are val (only used to watch training).
    :param str, Preset preset: acquisition preset (``"embedded"``, ``"paper"`` or a :class:`Preset`).
    :param contrasts: subset of :data:`~kspace_attacks.data.synth.CONTRASTS`
        (``"t1"`` template, ``"t1w"``, ``"t2w"``, ``"pd"``, ``"flair"``); default all.
    :param int samples_per_slice: random variants per slice and contrast
        (default 8 for train, 1 otherwise).
    :param bool augment: random flip/rotation/shift/zoom (default: only for train).
    :param int seed: master seed.
    :param dict synth_kwargs: extra arguments of :func:`~kspace_attacks.data.synth.synthesize`.
    """

    def __init__(
        self,
        split: str = "train",
        preset: str | Preset = "embedded",
        contrasts: Sequence[str] | None = None,
        samples_per_slice: int | None = None,
        augment: bool | None = None,
        seed: int = 0,
        augmentation: Augmentation | None = None,
        synth_kwargs: dict | None = None,
    ):
        check_choice("split", split, SPLITS)
        self.preset = get_preset(preset)
        contrasts = CONTRASTS if contrasts is None else contrasts
        if isinstance(contrasts, str):
            contrasts = (contrasts,)
        contrasts = tuple(contrasts)
        if not contrasts:
            raise ValueError(f"contrasts: expected a non-empty subset of {list(CONTRASTS)}, got ()")
        for c in contrasts:
            check_choice("contrasts", c, CONTRASTS)
        if samples_per_slice is None:
            samples_per_slice = 8 if split == "train" else 1
        check_positive_int("samples_per_slice", samples_per_slice)
        check_positive_int("seed", seed, minimum=0)
        self.split = split
        self.contrasts = contrasts
        self.samples_per_slice = samples_per_slice
        self.augment = (split == "train") if augment is None else bool(augment)
        self.augmentation = Augmentation() if augmentation is None else augmentation
        self.seed = seed
        self.synth_kwargs = {"phase": self.preset.phase, **(synth_kwargs or {})}
        self._arrays = load_embedded(self.preset.img_size)
        self.slices = split_slices(self._arrays["split"], self._arrays["z"], split)
        self.z = self._arrays["z"][self.slices].astype(int)
        self.blocks = anatomical_blocks(self._arrays["z"])[self.slices]
        self._physics = None

    @property
    def physics(self):
        """The preset's deepinv physics (built lazily, once per process)."""
        if self._physics is None:
            self._physics = self.preset.physics()
        return self._physics

    def __getstate__(self) -> dict:
        # deepinv physics hold lambdas (not picklable): rebuild them in worker processes
        return {**self.__dict__, "_physics": None}

    def __len__(self) -> int:
        return len(self.slices) * len(self.contrasts) * self.samples_per_slice

    def info(self, index: int) -> dict:
        """``slice`` (row in the npz), ``z`` (template index), ``contrast``, ``sample``, ``seed``,
        ``subject`` (:data:`SUBJECT`: every item is the one template brain) and ``block`` (its
        anatomical block of :data:`~kspace_attacks.data.build.BLOCK` neighbouring slices)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected an int, got {type(index).__name__} {index!r}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index: expected an int in [-{n}, {n}), got {index}")
        index = int(index) % n
        per_slice = len(self.contrasts) * self.samples_per_slice
        s, r = divmod(index, per_slice)
        c, k = divmod(r, self.samples_per_slice)
        z = int(self.z[s])
        contrast = self.contrasts[c]
        return {
            "slice": int(self.slices[s]),
            "z": z,
            "contrast": contrast,
            "sample": k,
            "seed": _item_seed(self.seed, z, contrast, k, self.augment),
            "subject": SUBJECT,
            "block": int(self.blocks[s]),
        }

    def image(self, index: int) -> Tensor:
        """Ground truth x (2, H, W) of item ``index`` without simulating k-space."""
        return self._image(self.info(index))[0]

    def _image(self, meta: dict) -> tuple[Tensor, torch.Generator]:
        g = torch.Generator().manual_seed(meta["seed"])
        maps = _maps(self._arrays, meta["slice"])
        if self.augment:
            maps = augment(maps, g, self.augmentation)
        return synthesize(maps, meta["contrast"], g, **self.synth_kwargs), g

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x, g = self._image(self.info(index))
        y = self.preset.simulate(x[None], physics=self.physics, generator=g)[0]
        return x, y

    def __repr__(self) -> str:
        return (
            f"EmbeddedBrain(split={self.split!r}, preset={self.preset.name!r}, "
            f"contrasts={self.contrasts}, samples_per_slice={self.samples_per_slice}, "
            f"augment={self.augment}, seed={self.seed}, len={len(self)})"
        )


def demo_batch(
    n: int = 4,
    preset: str | Preset = "embedded",
    split: str = "test",
    seed: int = 0,
    contrast: str = "t1",
):
    """A ready-to-use batch ``(x, y, physics)`` of ``n`` slices spread over the split.

    ``x`` (n, 2, H, W), ``y`` (n, 2, H, W) or (n, 2, N, H, W), ``physics`` with a mask of
    shape (n, 2, H, W). Default contrast ``"t1"`` (the template's own T1 image, like the study).

    Example::

        >>> from kspace_attacks.data import demo_batch
        >>> x, y, physics = demo_batch(2)
        >>> x.shape, y.shape, physics.A_adjoint(y).shape
        (torch.Size([2, 2, 64, 64]), torch.Size([2, 2, 64, 64]), torch.Size([2, 2, 64, 64]))
    """
    check_positive_int("n", n)
    ds = EmbeddedBrain(split, preset, contrasts=(contrast,), samples_per_slice=1, seed=seed)
    if n > len(ds):
        raise ValueError(f"n: expected at most {len(ds)} (slices in split {split!r}), got {n}")
    idx = (
        np.round(np.linspace(0, len(ds) - 1, n + 2)[1:-1]).astype(int)
        if n < len(ds) - 1
        else np.arange(n)
    )
    xs, ys = zip(*(ds[int(i)] for i in idx), strict=True)
    physics = ds.preset.physics(batch_size=n)
    return torch.stack(xs), torch.stack(ys), physics
