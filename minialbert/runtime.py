"""Which precision to train in: `--dtype auto` measures instead of assuming.

On CUDA, bf16 where the GPU supports it. On a CPU, a short same-process matmul probe times fp32
against bf16 (a CPU may report native bf16 instructions and still run bf16 matmuls at half the
fp32 speed), and bf16 is chosen only when it is clearly faster. The verdict is cached per CPU
model, instruction sets and torch version, so the probe runs once per machine.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

import torch

from .errors import MiniAlbertError
from .fingerprint import cache_root  # noqa: F401  (re-exported: where derived files are cached)
from .records import write_json

logger = logging.getLogger(__name__)
from .options import DTYPE_HELP, DTYPES  # noqa: F401  (with the option definitions, light for the CLI)
BF16_MARGIN = 1.10  # bf16 must beat fp32 by 10% to be picked: a tie is not worth the lower precision


def _cpuinfo(*fields: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of `fields` (None off Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(fields):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


# The instruction sets that decide bf16 matmul speed (x86 "flags", Arm "Features" in /proc/cpuinfo).
# Cloud CPUs often report one model name ("AMD EPYC") for hosts with and without AVX512-BF16, so the
# name alone cannot tell them apart.
BF16_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "sve", "sve2", "bf16", "i8mm")


def _cpu_features() -> str:
    flags = _cpuinfo("flags", "Features")
    if flags is not None:
        present = set(flags.split())
        return " ".join(f for f in BF16_FEATURES if f in present) or "none of " + ", ".join(BF16_FEATURES)
    try:  # elsewhere (macOS, Windows): the kernels torch dispatches to
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # never lose a run's record over its description
        return "unknown"


def matmul_gflops(dtype: torch.dtype, rows: int = 1024, inner: int = 1024, cols: int = 1024,
                  device: str = "cpu", seconds: float = 0.3) -> float:
    """Sustained GFLOP/s of a (rows x inner) @ (inner x cols) product in `dtype` on `device` (CPU
    threads as configured; CUDA synchronised around the timing). The one matmul probe: `--dtype
    auto` uses a square product, the benchmarks the shape of the model's dominant linear layer (on
    CPUs without native bf16, bf16 speed depends strongly on the shape)."""
    a = torch.randn(rows, inner, device=device).to(dtype)
    b = torch.randn(inner, cols, device=device).to(dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    torch.mm(a, b)  # warm-up (first call may pick kernels)
    sync()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or reps < 2:
        torch.mm(a, b)
        reps += 1
        sync()
    return 2 * rows * inner * cols * reps / (time.perf_counter() - start) / 1e9


def machine_description() -> dict:
    """Where a run ran: the CPU model, instruction sets and threads, and the GPU when one is used."""
    info = {"cpu": _cpu_name(), "cpu_features": _cpu_features(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when a GPU is visible, else cpu; 'cuda' without a GPU is a clear error."""
    if name not in ("auto", "cpu", "cuda"):
        raise MiniAlbertError(f"--device must be auto, cpu or cuda (got {name!r}).")
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        raise MiniAlbertError("--device cuda: no CUDA GPU is visible to PyTorch here (torch "
                              f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu, "
                              "or install a CUDA build of torch on a GPU machine.")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and cuda) else "cpu")


def _probe_cache() -> Path:
    return cache_root() / "dtype-probe.json"


def cpu_dtype_probe(refresh: bool = False) -> dict:
    """{'fp32_gflops', 'bf16_gflops', 'choice', 'cpu', 'cpu_features', 'torch', 'threads'}; cached per machine."""
    cpu, features = _cpu_name(), _cpu_features()
    key = f"{cpu}|{features}|torch {torch.__version__}|threads {torch.get_num_threads()}"
    cache = _probe_cache()
    if not refresh:
        try:
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                return cached
        except (OSError, ValueError):
            pass
    fp32 = matmul_gflops(torch.float32)
    bf16 = matmul_gflops(torch.bfloat16)
    result = {"key": key, "cpu": cpu, "cpu_features": features, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "fp32_gflops": round(fp32, 1), "bf16_gflops": round(bf16, 1),
              "choice": "bf16" if bf16 > BF16_MARGIN * fp32 else "fp32"}
    try:
        write_json(cache, result)
    except OSError:  # a read-only home only costs the probe next time
        pass
    return result


def resolve_dtype(name: str) -> str:
    """'auto' -> 'bf16' or 'fp32' (said in the log, with the reason); other names are checked."""
    if name not in DTYPES:
        raise MiniAlbertError(f"--dtype must be one of {', '.join(DTYPES)} (got {name!r}).")
    cuda = torch.cuda.is_available()
    if name == "fp16" and not cuda:
        raise MiniAlbertError("--dtype fp16 needs a CUDA GPU; on CPU use fp32, bf16 or auto.")
    if name != "auto":
        return name
    if cuda:
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        logger.info("--dtype auto: %s on %s (bf16 %ssupported).", choice, torch.cuda.get_device_name(),
                    "" if choice == "bf16" else "not ")
        return choice
    probe = cpu_dtype_probe()
    logger.info("--dtype auto: %s on this CPU (%s): matmul probe fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s%s.",
                probe["choice"], probe["cpu"], probe["fp32_gflops"], probe["bf16_gflops"],
                "" if probe["choice"] == "bf16" else " (bf16 picked only when >10% faster)")
    return probe["choice"]


def training_arguments(output_dir, dtype: str, seed: int, **settings):
    """The one place the Trainer's arguments are built: the device (a GPU when one is visible, else
    the CPU; torchrun / accelerate choose the GPU per process), the resolved precision `dtype`, the
    seed of the model and of the data order, and no reporting integrations (TensorBoard logs come
    from compat.tensorboard_callback). `settings`: everything that is the caller's own."""
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(output_dir), use_cpu=not torch.cuda.is_available(),
                             bf16=dtype == "bf16", fp16=dtype == "fp16", seed=seed, data_seed=seed,
                             report_to="none",
                             # a resumed run gets back its callbacks' state (resumable.py: its clock, its epoch's order)
                             restore_callback_states_from_checkpoint=True, **settings)
