"""CPU latency of a model on 48x48 faces (median and p95 over repeated runs), and the machine it was timed on."""
import os
import platform
import time

import numpy as np
import torch

from ..data.preprocess import FACE_SIZE
from ..errors import FerError
from ..ort_options import usable_cpus
from .registry import for_inference

CPU_LIMIT_ENV = "FER_CPU_LIMIT"  # set by tools/avx2_only.py: this process runs narrower code paths than its CPU has


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")  # what int8
# and bf16 kernels use: VNNI does int8 dot products in one instruction, AVX2 alone needs three


def cpu_flags() -> list:
    """Which of SIMD_FLAGS this CPU has (from /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return [f for f in SIMD_FLAGS if f in flags]


def machine() -> dict:
    """The CPU a figure was measured on: model name, cores this process may use, SIMD flags, torch threads, and
    `limited_to` when FER_CPU_LIMIT says the libraries were held to narrower code paths than the CPU has."""
    cores = usable_cpus()
    limit = os.environ.get(CPU_LIMIT_ENV)
    return {"cpu": cpu_name(), "cores": cores, "flags": cpu_flags(), "threads": torch.get_num_threads(),
            **({"limited_to": limit} if limit else {})}


def card_machine(m: dict = None) -> dict:
    """`m` (default: this machine) for a figure a card will keep; FerError when its code paths were limited:
    such figures describe no real machine."""
    m = m or machine()
    if m.get("limited_to"):
        raise FerError(f"{CPU_LIMIT_ENV}={m['limited_to']}: figures from limited code paths describe no real machine "
                       "and are not stored in cards (unset it, with the PYTHONPATH tools/avx2_only.py set)")
    return m


def machine_line(m: dict) -> str:
    """`machine()` in a few words: 'AMD EPYC, 2 cores (avx2 avx512f ...), 2 threads'."""
    limited = f", code paths limited to {m['limited_to']} (tools/avx2_only.py)" if m.get("limited_to") else ""
    return f"{m['cpu']}, {m['cores']} cores ({' '.join(m['flags']) or 'no AVX2'}), {m['threads']} threads{limited}"


@torch.inference_mode()
def latency_ms(model, batch=1, runs=100, warmup=10) -> dict:
    """Per-face milliseconds for `model` on the CPU at `batch` faces per call."""
    model = model.cpu().eval()
    x = torch.randn(batch, 1, FACE_SIZE, FACE_SIZE)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t) * 1000 / batch)
    return {"median": round(float(np.median(times)), 3), "p95": round(float(np.percentile(times, 95)), 3)}


def cpu_latency_card(model) -> dict:
    """Per-face latency at batch 1 and 16 of `model` as EmotionRecognizer runs it (registry.for_inference)."""
    model = for_inference(model)
    return {"batch1": latency_ms(model, 1), "batch16": latency_ms(model, 16, runs=30),
            "torch": torch.__version__, **card_machine()}
