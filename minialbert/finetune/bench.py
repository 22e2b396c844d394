"""`minialbert bench finetune`: seconds per training step for full fine-tuning and for adapter
tuning of the same model on the same batches, measured in one run."""

from __future__ import annotations


import statistics
import time

import torch

from ..checkpoints import resolve_model_name
from ..packaged import packaged_teacher_path
from ..errors import MiniAlbertError
from ..hf_utils import quiet_transformers
from ..model import PRESETS, MiniAlbertForSequenceClassification, preset_config
from ..data.glue import get_task, load_glue
from .options import BenchFinetuneOptions  # noqa: F401  (options apart: the CLI reads them without torch)


def bench_finetune(model: str, task_name: str, data_dir, steps=20, batch_size=32, max_length=128) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    task = get_task(task_name)
    if data_dir is None:
        raise MiniAlbertError("bench finetune needs --data-dir with the task's official train.tsv.")
    train = load_glue(task, data_dir)["train"]
    n = batch_size * (steps + 1)
    if len(train.texts) < n:
        raise MiniAlbertError(f"{train.file} has {len(train.texts)} rows; {n} are needed for {steps} steps.")
    tokenizer = AutoTokenizer.from_pretrained(packaged_teacher_path() if model in PRESETS else resolve_model_name(model))
    def make_batches(order):
        out = []
        for b in range(steps + 1):
            rows = order[b * batch_size:(b + 1) * batch_size]
            columns = list(zip(*[train.texts[i] for i in rows]))
            enc = tokenizer(*columns, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            enc["labels"] = torch.tensor([train.labels[i] for i in rows])
            out.append(enc)
        return out

    batches = make_batches(list(range(n)))
    # what the finetune default (--group-by-length) feeds: the same rows, batched by similar length
    lengths = [len(x) for x in tokenizer(*list(zip(*train.texts[:n])), truncation=True,
                                         max_length=max_length)["input_ids"]]
    grouped = make_batches(sorted(range(n), key=lambda i: lengths[i]))

    def build():
        torch.manual_seed(0)
        if model in PRESETS:
            return MiniAlbertForSequenceClassification(preset_config(model, num_labels=task.num_labels))
        with quiet_transformers():
            return AutoModelForSequenceClassification.from_pretrained(resolve_model_name(model),
                                                                      num_labels=task.num_labels)

    def time_steps(adapter: bool, batches=batches):
        m = build().train()
        trainable = m.prepare_adapter_tuning() if adapter else sum(p.numel() for p in m.parameters())
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=5e-4, weight_decay=0.01)
        times = []
        for i, batch in enumerate(batches):  # batch 0 warms up; not counted
            start = time.perf_counter()
            m(**batch).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i:
                times.append(time.perf_counter() - start)
        return statistics.median(times), trainable

    full_s, full_n = time_steps(adapter=False)
    adapter_s, adapter_n = time_steps(adapter=True)
    grouped_s, _ = time_steps(adapter=False, batches=grouped)
    from ..distillation.bench import matmul_peak_gflops

    config = build().config
    slots = int(statistics.median(b["input_ids"].numel() for b in batches[1:]))  # padded tokens: computed anyway
    real = int(statistics.median(int(b["attention_mask"].sum()) for b in batches[1:]))
    grouped_real = sum(int(b["attention_mask"].sum()) for b in grouped[1:])
    grouped_slots = sum(b["input_ids"].numel() for b in grouped[1:])
    forward = _forward_flops(config, slots, batches[1]["input_ids"].shape[1])
    peak = matmul_peak_gflops(torch.float32, slots, config.hidden_size)
    # full fine-tuning: forward + backward (input and weight gradients) ~ 3x the forward;
    # adapter tuning: the frozen matrices need input gradients only ~ 2x
    return {"model": model, "task": task.name, "batch_size": batch_size, "max_length": max_length, "steps": steps,
            "full_step_s_median": round(full_s, 4), "adapter_step_s_median": round(adapter_s, 4),
            "adapter_speedup": round(full_s / adapter_s, 3), "full_trainable_parameters": full_n,
            "adapter_trainable_parameters": adapter_n, "padding_fraction": round(1 - real / slots, 4),
            "full_real_tokens_per_s": round(real / full_s, 1), "adapter_real_tokens_per_s": round(real / adapter_s, 1),
            "grouped_padding_fraction": round(1 - grouped_real / grouped_slots, 4),
            "grouped_full_real_tokens_per_s": round(grouped_real / steps / grouped_s, 1),
            "matmul_peak_gflops_fp32": round(peak, 1),
            "full_mfu": round(3 * forward / full_s / 1e9 / peak, 3),
            "adapter_mfu": round(2 * forward / adapter_s / 1e9 / peak, 3), "threads": torch.get_num_threads()}


def _forward_flops(config, tokens: int, seq: int) -> float:
    """Matmul FLOPs of one forward pass over `tokens` token slots (QKV+O, FFN, attention)."""
    H, I = config.hidden_size, config.intermediate_size
    per_token = config.num_hidden_layers * (2 * (4 * H * H + 2 * H * I) + 4 * seq * H)
    return per_token * tokens
