"""`minialbert bench infer`: latency and throughput of the student and compared models, one run."""

from __future__ import annotations

import statistics
import time

import psutil
import torch

from ..data.offline import resolve_model_name
from ..hf_utils import quiet_transformers
from ..model import PRESETS, MiniAlbertModel, preset_config

# Randomly initialised reference shapes (no download): the teacher, and a BERT of equal depth.
BERT_SHAPES = {"bert-base": {}, "bert-6layer": {"num_hidden_layers": 6}}


def build_model(name: str):
    from transformers import AutoModel, BertConfig, BertModel

    if name in PRESETS:
        return MiniAlbertModel(preset_config(name))
    if name in BERT_SHAPES:
        return BertModel(BertConfig(**BERT_SHAPES[name]), add_pooling_layer=False)
    import minialbert  # noqa: F401

    with quiet_transformers():
        return AutoModel.from_pretrained(resolve_model_name(name))


@torch.inference_mode()
def bench_infer(model: str, compare: list[str], batch=8, seq=128, reps=10, compile_model=False) -> dict:
    """All models are built and warmed up first, then timed round-robin (one call each per round), so
    drift in a noisy machine's speed affects every model alike."""
    names = [model, *compare]
    models = {n: build_model(n).eval() for n in names}
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    if compile_model:
        models = {n: torch.compile(m) for n, m in models.items()}
    ids = torch.randint(1000, 20000, (batch, seq))
    mask = torch.ones_like(ids)
    for m in models.values():
        for _ in range(2):  # warm-up (and compilation)
            m(input_ids=ids, attention_mask=mask)
    times = {n: [] for n in names}
    for _ in range(reps):
        for n, m in models.items():
            start = time.perf_counter()
            m(input_ids=ids, attention_mask=mask)
            times[n].append(time.perf_counter() - start)
    rows = {}
    for n in names:
        t = sorted(times[n])
        median = statistics.median(t)
        rows[n] = {"parameters": params[n], "latency_ms_median": round(1000 * median, 2),
                   "latency_ms_p90": round(1000 * t[min(len(t) - 1, int(0.9 * len(t)))], 2),
                   "sequences_per_s": round(batch / median, 2), "tokens_per_s": round(batch * seq / median, 1)}
    base = rows[model]["latency_ms_median"]
    return {"batch": batch, "seq": seq, "reps": reps, "compiled": compile_model, "threads": torch.get_num_threads(),
            "peak_rss_mb": round(psutil.Process().memory_info().rss / 2 ** 20, 1), "models": rows,
            "student_speedup_vs": {n: round(rows[n]["latency_ms_median"] / base, 3) for n in compare}}
