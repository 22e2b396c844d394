"""`minialbert bench distill`: full distillation steps timed on random weights, plus the exactness
checks of the fast training path. Figures only; no assertions on speed."""

from __future__ import annotations

import contextlib
import platform
import resource
import statistics
import time

import torch

from .. import allocator
from ..compat import cpu_has_native_bf16
from ..runtime import matmul_gflops
from ..model import MiniAlbertForMaskedLM
from .options import TEACHER_SHAPES, DistillBenchOptions  # noqa: F401  (options apart: the CLI reads them without torch)
from .losses import LossWeights, distillation_losses, uniform_layer_map
from .recipe import DistillRecipe
from .teacher import Teacher
from .masking import SeededMaskingCollator
from .student import student_config
from .trainer import DistillationModel

def matmul_peak_gflops(dtype, tokens: int, hidden: int, device: str = "cpu") -> float:
    """FLOP/s of the model's dominant matrix product, the FFN linear (tokens x H) @ (H x 4H)."""
    return matmul_gflops(dtype, tokens, hidden, 4 * hidden, device=device, seconds=0.5)


def step_flops(teacher_cfg, student_cfg, B, T, n_masked, split: bool = False):
    """Matmul FLOPs of one step: teacher forward, student forward + backward (x3); with `split`,
    (teacher forward, student forward) separately."""
    def layer_flops(H, I):  # per token: QKV+O, FFN, attention scores and context
        return 2 * (4 * H * H + 2 * H * I) + 4 * T * H
    tokens = B * T
    H, V = teacher_cfg.hidden_size, teacher_cfg.vocab_size
    head = 2 * (H * H + H * V) * n_masked
    teacher = teacher_cfg.num_hidden_layers * layer_flops(H, teacher_cfg.intermediate_size) * tokens + head
    s = student_cfg
    adapters = (4 * 2 * s.hidden_size * (s.hidden_size // s.adapter_reduction_factor) * s.num_hidden_layers
                if s.use_adapters else 0)
    proj = 2 * s.embedding_size * s.hidden_size if s.embedding_size != s.hidden_size else 0
    student = (s.num_hidden_layers * layer_flops(s.hidden_size, s.intermediate_size) + adapters + proj) * tokens
    return (teacher, student + head) if split else teacher + 3 * (student + head)


class _BenchTokenizer:
    """What the masking collator needs of a tokenizer, for random-weight benchmarks without a vocabulary."""

    def __init__(self, vocab_size: int):
        self.vocab_size, self.mask_token, self.mask_token_id, self.pad_token_id = vocab_size, "[MASK]", 103, 0
        self.padding_side = "right"

    def __len__(self):
        return self.vocab_size

    def convert_tokens_to_ids(self, token):
        return self.mask_token_id

    def pad(self, examples, return_tensors="pt"):
        T = max(len(e["input_ids"]) for e in examples)
        batch = {k: torch.tensor([e[k] + [0] * (T - len(e[k])) for e in examples]) for k in examples[0]}
        batch["attention_mask"] = torch.tensor([[1] * len(e["input_ids"]) + [0] * (T - len(e["input_ids"]))
                                                for e in examples])
        return batch


def bench_distill(opts: DistillBenchOptions) -> dict:
    """Times full distillation steps on `opts.device`: models, batches, autocast and the matmul peak
    of the MFU all on the device named (auto: a GPU when one is visible)."""
    from transformers import BertConfig, BertForMaskedLM

    teacher_shape, student, B, T, steps, dtype, profile, device = (
        opts.teacher_config, opts.student, opts.batch, opts.seq, opts.steps, opts.dtype, opts.profile, opts.device)

    from ..runtime import cpu_dtype_probe, resolve_device, resolve_dtype

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    requested = dtype
    if cuda:
        dtype = ("bf16" if torch.cuda.is_bf16_supported() else "fp32") if requested == "auto" else requested
        dtype_reason = "requested" if requested != "auto" else f"auto: {torch.cuda.get_device_name(dev)}"
    else:
        probe = cpu_dtype_probe() if requested == "auto" else None
        dtype = probe["choice"] if probe else resolve_dtype(dtype)
        dtype_reason = ("requested" if probe is None else f"auto: matmul probe fp32 {probe['fp32_gflops']} vs bf16 "
                        f"{probe['bf16_gflops']} GFLOP/s on {probe['cpu']}")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    torch.manual_seed(0)
    t_cfg = BertConfig(**TEACHER_SHAPES[teacher_shape], attn_implementation="eager")
    teacher_model = BertForMaskedLM(t_cfg).eval().requires_grad_(False).to(dev)
    teacher = Teacher(name=f"random-{teacher_shape}", model=teacher_model, encoder=teacher_model.bert,
                      head=teacher_model.cls)
    s_cfg = student_config(DistillRecipe(preset=student), t_cfg)
    s_cfg.hidden_dropout_prob = s_cfg.attention_probs_dropout_prob = 0.0  # deterministic comparisons
    layer_map = uniform_layer_map(s_cfg.num_hidden_layers, t_cfg.num_hidden_layers)
    model = DistillationModel(MiniAlbertForMaskedLM(s_cfg), layer_map, LossWeights()).train().to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4, fused=True)  # as the trainer: adamw_torch_fused

    ids = torch.randint(1000, t_cfg.vocab_size, (B, T))
    attention_mask = torch.ones(B, T, dtype=torch.long)
    attention_mask[-1, T * 3 // 4:] = 0  # some padding, as in real batches
    labels = torch.where((torch.rand(B, T) < 0.15) & attention_mask.bool(), ids, torch.full_like(ids, -100))
    cpu_windows = [{"input_ids": ids[b][attention_mask[b].bool()].tolist(), "special_tokens_mask":
                    [0] * int(attention_mask[b].sum()), "window_index": b} for b in range(B)]
    ids, attention_mask, labels = ids.to(dev), attention_mask.to(dev), labels.to(dev)
    masked = labels != -100

    def autocast(kind):
        low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(kind)
        return torch.autocast(dev.type, dtype=low) if low else contextlib.nullcontext()

    def losses_on_batch(kind):
        with torch.no_grad(), autocast(kind):
            t_hidden, t_attn, t_logits = teacher.forward(ids, attention_mask, None, masked)
            return model(ids, attention_mask, labels, t_hidden, t_attn, t_logits)

    # Exactness: the training path (masked-only logits, fused unmapped teacher layers) equals
    # distillation_losses on full (B, T, V) tensors of the all-eager teacher.
    with torch.no_grad():
        s_full = model.student(ids, attention_mask, output_hidden_states=True, output_attentions=True)
        t_full = teacher_model(ids, attention_mask=attention_mask, output_hidden_states=True, output_attentions=True)
        full = distillation_losses(s_full, t_full, labels, attention_mask, layer_map)
    if opts.fused_unmapped_attention:
        teacher.maps_only_for(layer_map)  # as the trainer: maps only where a loss reads them
    fast = losses_on_batch("fp32")
    max_diff = max(abs(fast[k].item() - full[k].item()) for k in ("mlm", "attention", "hidden", "output"))
    result = {"fp32_fast_path_vs_full_tensor_max_abs_diff": max_diff}
    if dtype == "bf16":
        low = losses_on_batch("bf16")
        result["bf16_vs_fp32_loss_rel_diff"] = abs(low["loss"].item() - fast["loss"].item()) / abs(fast["loss"].item())

    shape = (B * T, t_cfg.hidden_size)
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, torch.float32)
    peaks = [matmul_peak_gflops(low, *shape, device=dev.type)]  # probed before and after the steps: the
    # higher of the two is the peak, so a slow moment of a shared machine cannot inflate the MFU

    # One step, phase by phase (each phase waits for its own work: CPU ops are synchronous).
    phases = {k: [] for k in ("data", "teacher_forward", "student_forward", "losses", "backward", "optimizer")}
    collator = SeededMaskingCollator(_BenchTokenizer(t_cfg.vocab_size), 0.15, seed=0)
    times = []
    for step in range(steps + 1):  # the first step warms up allocators and kernels; not counted
        marks = [time.perf_counter()]
        collator(cpu_windows)  # the real masking collator on this batch's windows (on the CPU, as in training)
        marks.append(time.perf_counter())
        with autocast(dtype):
            t_hidden, t_attn, t_logits = teacher.forward(ids, attention_mask, None, masked)
            sync()
            marks.append(time.perf_counter())
            out, s_logits = model.student_outputs(ids, attention_mask, labels)
            sync()
            marks.append(time.perf_counter())
            loss = model.losses(out, s_logits, attention_mask, labels, t_hidden, t_attn, t_logits)["loss"]
            sync()
            marks.append(time.perf_counter())
        loss.backward()
        sync()
        marks.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        marks.append(time.perf_counter())
        if step:
            times.append(marks[-1] - marks[0])
            for name, a, b in zip(phases, marks, marks[1:]):
                phases[name].append(b - a)
    median = statistics.median(times)
    flops = step_flops(t_cfg, s_cfg, B, T, int(masked.sum()))
    peak = max(*peaks, matmul_peak_gflops(low, *shape, device=dev.type))
    peak_fp32 = peak if dtype == "fp32" else matmul_peak_gflops(torch.float32, *shape, device=dev.type)
    real = int(attention_mask.sum())
    result.update({
        "device": dev.type, "device_name": torch.cuda.get_device_name(dev) if cuda else platform.processor() or
        platform.machine(), "teacher": teacher_shape, "student": student, "dtype": dtype, "dtype_reason": dtype_reason,
        "batch": B, "seq": T, "steps": steps,
        "tokens_per_s": round(B * T / median, 1), "padding_fraction": round(1 - real / (B * T), 4),
        "real_tokens_per_s": round(real / median, 1), "step_s_median": round(median, 3),
        "step_s_all": [round(t, 3) for t in times], "step_gflop": round(flops / 1e9, 1),
        "achieved_gflops": round(flops / median / 1e9, 1), "matmul_peak_gflops": round(peak, 1),
        "matmul_peak_gflops_fp32": round(peak_fp32, 1), "mfu": round(flops / median / 1e9 / peak, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **({"peak_gpu_mb": round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1)} if cuda else {}),
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
        "teacher_map_layers": list(teacher.map_layers) if teacher.map_layers else "all",
        "freed_memory_kept": allocator.APPLIED,  # allocator.keep_freed_memory (the CLI applies it)
    })
    if profile:
        t_flops, s_flops = step_flops(t_cfg, s_cfg, B, T, int(masked.sum()), split=True)
        per_phase = {k: statistics.median(v) for k, v in phases.items()}
        gflop = {"teacher_forward": t_flops, "student_forward": s_flops, "backward": 2 * s_flops}
        result["profile"] = {k: {"seconds": round(v, 4), "share": round(v / sum(per_phase.values()), 3),
                                 **({"gflops": round(gflop[k] / v / 1e9, 1)} if k in gflop else {})}
                             for k, v in per_phase.items()}
    return result
