"""`--dtype auto`: bf16 only where this CPU measures it faster; the verdict is cached per machine."""

import os
import pytest
import torch

from minialbert import runtime
from minialbert.errors import MiniAlbertError


@pytest.mark.parametrize("fp32,bf16,choice", [(60.0, 10.0, "fp32"), (200.0, 210.0, "fp32"), (206.0, 923.0, "bf16")])
def test_auto_picks_bf16_only_where_it_is_clearly_faster(fp32, bf16, choice, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls = []

    def fake(dtype, **kw):
        calls.append(dtype)
        return bf16 if dtype == torch.bfloat16 else fp32

    monkeypatch.setattr(runtime, "matmul_gflops", fake)
    assert runtime.resolve_dtype("auto") == choice
    assert runtime.resolve_dtype("auto") == choice and len(calls) == 2  # the second call reads the cache
    assert runtime.cpu_dtype_probe()["fp32_gflops"] == fp32


def test_the_cached_verdict_is_not_reused_on_a_cpu_with_other_instruction_sets(tmp_path, monkeypatch):
    """Two hosts can share a model name ("AMD EPYC") and a cache folder, one with AVX512-BF16 and one without."""
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_cpu_name", lambda: "AMD EPYC")
    speeds = {"avx2 avx512f avx512_bf16": (200.0, 800.0), "avx2": (200.0, 20.0)}
    host = {"features": "avx2 avx512f avx512_bf16"}
    monkeypatch.setattr(runtime, "_cpu_features", lambda: host["features"])
    calls = []
    monkeypatch.setattr(runtime, "matmul_gflops",
                        lambda dtype, **kw: calls.append(dtype) or speeds[host["features"]][dtype == torch.bfloat16])
    assert runtime.resolve_dtype("auto") == "bf16" and runtime.resolve_dtype("auto") == "bf16"
    assert len(calls) == 2  # the same host reads its cached verdict
    host["features"] = "avx2"
    assert runtime.resolve_dtype("auto") == "fp32"
    assert runtime.machine_description()["cpu_features"] == "avx2"


def test_explicit_dtypes_pass_and_bad_ones_are_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_dtype("fp32") == "fp32"
    with pytest.raises(MiniAlbertError, match="--dtype must be one of"):
        runtime.resolve_dtype("fp8")
    with pytest.raises(MiniAlbertError, match="fp16 needs a CUDA GPU"):
        runtime.resolve_dtype("fp16")


def test_bench_distill_runs_on_the_device_it_names_and_refuses_an_absent_gpu(monkeypatch, capsys):
    import json

    from minialbert.cli import main

    assert main(["bench", "distill", "--teacher-config", "minilm", "--student", "minialbert-128", "--batch", "2",
                 "--seq", "32", "--steps", "1", "--dtype", "fp32", "--device", "cpu", "--profile", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["device"] == "cpu" and result["dtype"] == "fp32"
    assert result["fp32_fast_path_vs_full_tensor_max_abs_diff"] < 1e-4  # the training path = the full-tensor losses
    assert result["tokens_per_s"] > 0 and 0 < result["mfu"] and result["matmul_peak_gflops"] > 0
    assert set(result["profile"]) == {"data", "teacher_forward", "student_forward", "losses", "backward", "optimizer"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "distill", "--device", "cuda", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA GPU is visible" in err and "Traceback" not in err


def test_freed_memory_is_kept_for_reuse_unless_opted_out():
    """The CLI's allocator setting (minialbert/allocator.py): applied on glibc, off with the opt-out."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt is Linux-only")
    code = "from minialbert.allocator import keep_freed_memory as k; print(k())"
    env = {k: v for k, v in os.environ.items() if k != "MINIALBERT_SYSTEM_MALLOC"}
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "MINIALBERT_SYSTEM_MALLOC": "1"}).stdout.strip()
    assert (on, off) == ("True", "False")
