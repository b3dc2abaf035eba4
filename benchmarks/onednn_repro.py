"""Find the smallest torch-only case of the oneDNN CPU heap corruption in narrow convolutions.

    python benchmarks/onednn_repro.py            # every case, each in a process of its own
    python benchmarks/onednn_repro.py --case conv3x3_4to4 --threads 1   # one case, in this process

Reported on a 2-core AMD EPYC machine (torch 2.14.1, Python 3.11): training a ResUnet++ of
widths [4, 4, 8, 8] at one intra-op thread aborts in ``loss.backward()`` with ``double free or
corruption (!prev)``; widths [8, 8, 8, 8] and [16, 32, 48, 64], 2 threads, or oneDNN disabled
all pass. Each case below is one layer type (or a small stack) with 4 channels, trained 15 Adam
steps on (4, C, 32, 32) float32 inputs, once per (threads, oneDNN on/off, memory format), in a
child process so that an abort is a row of the table rather than the end of the script. The
last cases are the full narrow ResUnet++ of the report (needs this package) and its 8-channel
control. Each row also names the oneDNN kernels the case ran (``ONEDNN_VERBOSE``), which is
what differs between processors.

Writes ``benchmarks/results/onednn_repro_<cpu>.csv`` (one row per run) and prints the table. On
a processor where nothing fails every row says ``ok``; the workaround in this package
(:mod:`kspace_attacks._kernels`: oneDNN off, scoped, while a model whose convolutions are all
narrower than 8 channels runs forward and backward on the CPU) is what the package's training
and attacks use there.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import signal
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = 15


def _cases():
    import torch
    from torch import nn

    def seq(*layers):
        return nn.Sequential(*layers)

    return {
        "conv3x3_2to4": lambda: (seq(nn.Conv2d(2, 4, 3, padding=1)), 2),
        "conv3x3_4to4": lambda: (seq(nn.Conv2d(4, 4, 3, padding=1)), 4),
        "conv3x3_4to4_stride2": lambda: (seq(nn.Conv2d(4, 4, 3, stride=2, padding=1)), 4),
        "conv3x3_4to4_dilation2": lambda: (seq(nn.Conv2d(4, 4, 3, padding=2, dilation=2)), 4),
        "conv3x3_4to4_dilation3": lambda: (seq(nn.Conv2d(4, 4, 3, padding=3, dilation=3)), 4),
        "conv1x1_4to4_stride2": lambda: (seq(nn.Conv2d(4, 4, 1, stride=2)), 4),
        "conv3x3_8to4": lambda: (seq(nn.Conv2d(8, 4, 3, padding=1)), 8),
        "conv1x1_4to2": lambda: (seq(nn.Conv2d(4, 2, 1)), 4),
        "bn_relu_conv_4": lambda: (seq(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)), 4),
        "stack_4": lambda: (seq(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.ReLU(),
                                nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Upsample(scale_factor=2),
                                nn.Conv2d(4, 2, 1)), 2),
        "stack_8_control": lambda: (seq(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                        nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
                                        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Upsample(scale_factor=2),
                                        nn.Conv2d(8, 2, 1)), 2),
        "resunetpp_4_4_8_8": lambda: (_resunetpp([4, 4, 8, 8]), 2),
        "resunetpp_8_8_8_8_control": lambda: (_resunetpp([8, 8, 8, 8]), 2),
    }, torch


def _resunetpp(widths):
    from kspace_attacks.adapters.resunetpp import ResUnetPPNet  # the reported model (not torch-only)

    return ResUnetPPNet(2, widths, se_reduction=2)


def run_case(name: str, threads: int, onednn: bool, channels_last: bool) -> None:
    """Train one case in this process (a crash ends it: run it through :func:`main`)."""
    cases, torch = _cases()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.backends.mkldnn.enabled = onednn
    torch.manual_seed(0)
    net, channels = cases[name]()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    x = torch.randn(4, channels, 32, 32).to(memory_format=fmt)
    for _ in range(STEPS):
        out = net(x)
        loss = (out - out.detach().mean()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"finished: loss {float(loss.detach()):.6f}")


def _child(name: str, threads: int, onednn: bool, channels_last: bool) -> dict:
    env = dict(os.environ, ONEDNN_VERBOSE="1", PYTHONUNBUFFERED="1")
    args = [sys.executable, __file__, "--case", name, "--threads", str(threads),
            "--onednn", "on" if onednn else "off"] + (["--channels-last"] if channels_last else [])
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode == 0:
        status = "ok"
    elif proc.returncode < 0:
        status = signal.Signals(-proc.returncode).name
    else:
        status = f"exit {proc.returncode}"
    kernels = sorted({f"{m.group(2)}:{m.group(3)}" for m in
                      re.finditer(r"onednn_verbose,(?:v1,)?(?:primitive,)?exec,cpu,(convolution|deconvolution),"
                                  r"([^,]+),(\w+)", proc.stdout)})
    tail = (proc.stderr.strip().splitlines() or [""])[-1][:200] if status != "ok" else ""
    return {"case": name, "threads": threads, "onednn": "on" if onednn else "off",
            "memory_format": "channels_last" if channels_last else "contiguous", "status": status,
            "kernels": " ".join(k for k in kernels), "last_error_line": tail}


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.+)", text).group(1)
    except (OSError, AttributeError):
        model = platform.processor() or platform.machine()
    return model.strip()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", help="run this case in this process and exit")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--onednn", choices=("on", "off"), default="on")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--cases", nargs="*", help="only these cases (default: all)")
    p.add_argument("--out", type=Path, default=None, help="CSV to write (default: results/onednn_repro_<cpu>.csv)")
    a = p.parse_args(argv)
    if a.case:
        run_case(a.case, a.threads, a.onednn == "on", a.channels_last)
        return 0
    import torch

    names = a.cases or list(_cases()[0])
    rows = []
    for name in names:
        for threads, onednn, cl in ((1, True, False), (1, True, True), (2, True, False), (1, False, False)):
            row = _child(name, threads, onednn, cl)
            rows.append(row)
            print(f"{name:28s} threads={threads} onednn={row['onednn']:3s} {row['memory_format']:13s} "
                  f"{row['status']:8s} {row['kernels'][:90]}", flush=True)
    cpu = _cpu()
    out = a.out or RESULTS / f"onednn_repro_{re.sub(r'[^A-Za-z0-9]+', '_', cpu).strip('_')}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        f.write(f"# cpu: {cpu}; torch {torch.__version__}; python {platform.python_version()}; "
                f"{STEPS} Adam steps per run\n")
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{len(failed)} of {len(rows)} runs failed; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
