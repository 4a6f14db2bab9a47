"""CPU latency of a model on 48x48 faces (median and p95 over repeated runs)."""
import platform
import time

import numpy as np
import torch

from .models import for_inference
from .preprocess import FACE_SIZE


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    """Per-face latency at batch 1 and 16 of `model` as EmotionRecognizer runs it (models.for_inference)."""
    model = for_inference(model)
    return {"batch1": latency_ms(model, 1), "batch16": latency_ms(model, 16, runs=30),
            "threads": torch.get_num_threads(), "cpu": cpu_name(), "torch": torch.__version__}
