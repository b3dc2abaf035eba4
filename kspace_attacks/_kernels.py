"""Routing around a oneDNN CPU convolution kernel that corrupts memory on some processors.

On a 2-core AMD EPYC machine (torch 2.14.1, one intra-op thread) training a ResUnet++ whose
convolutions are all narrower than 8 channels (widths ``[4, 4, 8, 8]`` or ``[4, 8, 16, 32]``)
ends in ``double free or corruption`` inside ``loss.backward()``; widths ``[8, 8, 8, 8]`` and
the shipped ``[16, 32, 48, 64]`` train, and so does every width with oneDNN disabled or with 2
threads. ``benchmarks/onednn_repro.py`` isolates the layer on a machine where it fails.

The guard is scoped, never global: while a model with such a layer runs forward *and* backward
on the CPU (torch picks the convolution backend again for the backward pass, so the flag must
cover both), :func:`narrow_conv_guard` turns oneDNN off; every other model, and everything
outside the guarded block, keeps it. For the narrow layers concerned, torch's own kernels are as
fast.

    >>> import torch
    >>> tiny = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Conv2d(4, 2, 3))
    >>> wide = torch.nn.Conv2d(2, 16, 3)
    >>> with narrow_conv_guard(tiny):
    ...     inside = torch.backends.mkldnn.enabled
    >>> with narrow_conv_guard(wide):
    ...     kept = torch.backends.mkldnn.enabled
    >>> inside, kept == torch.backends.mkldnn.is_available()
    (False, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["NARROW_CHANNELS", "narrow_conv_layers", "narrow_conv_guard"]

#: A convolution whose input and output channels are both below this is routed around oneDNN.
NARROW_CHANNELS = 8

_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
          torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


def narrow_conv_layers(model: Any) -> list[str]:
    """Names of ``model``'s CPU convolutions narrower than :data:`NARROW_CHANNELS` on both
    sides (empty for anything that is not an ``nn.Module``)."""
    if not isinstance(model, torch.nn.Module):
        return []
    return [name for name, m in model.named_modules()
            if isinstance(m, _CONVS) and m.weight.device.type == "cpu"
            and max(m.in_channels, m.out_channels) < NARROW_CHANNELS]


@contextlib.contextmanager
def _onednn_off() -> Iterator[None]:
    # only the on/off switch: torch.backends.mkldnn.flags() would also reset oneDNN's
    # deterministic, TF32 and precision settings for the block
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def narrow_conv_guard(model: Any) -> contextlib.AbstractContextManager:
    """A context that disables oneDNN while ``model`` runs, if it has a narrow CPU convolution
    (:func:`narrow_conv_layers`); otherwise it changes nothing. Wrap forward *and* backward."""
    if narrow_conv_layers(model):
        return _onednn_off()
    return contextlib.nullcontext()
