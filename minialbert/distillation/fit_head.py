"""`minialbert fit-head`: give an encoder without an MLM head (e.g. the packaged sentence-embedding
MiniLM, or all-mpnet-base-v2) a trained head of its own family's kind (model/families.py), so the
output-distillation loss can be used."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import TrainerCallback

from ..checkpoints import resolve_model_name
from ..errors import MiniAlbertError
from ..records import write_json
from .options import FitHeadOptions  # noqa: F401  (options apart: the CLI reads them without torch)
from ..runtime import resolve_device, resolve_dtype, training_arguments

logger = logging.getLogger(__name__)


class HeadOnlyMLM(nn.Module):
    """Trains only the head: the frozen encoder runs without gradients and logits are computed at
    masked positions only (the full (B, T, V) tensor would cost as much as the encoder itself)."""

    def __init__(self, mlm):
        super().__init__()
        self.mlm = mlm

    def forward(self, input_ids, attention_mask, labels, token_type_ids=None):
        with torch.no_grad():
            h = _encode(self.mlm, input_ids, attention_mask, token_type_ids)
        masked = labels != -100
        return {"loss": F.cross_entropy(_head(self.mlm)(h[masked]), labels[masked])}


def _head(mlm):
    from ..model.families import teacher_mlm_head

    return teacher_mlm_head(mlm)


def _encode(mlm, input_ids, attention_mask, token_type_ids=None):
    """The frozen encoder's final states (token types only where its family has them)."""
    from ..model.families import family_for

    kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None and family_for(mlm).token_type else {}
    return mlm.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state


@torch.no_grad()
def masked_token_accuracy(mlm, windows, collator, seed: int, batch_size: int = 32) -> float:
    """Top-1 accuracy at masked positions; the masking is seeded, so two calls see the same masks."""
    mlm.eval()
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    correct = total = 0
    device = next(mlm.parameters()).device
    for start in range(0, len(windows), batch_size):
        batch = collator([windows[i] for i in range(start, min(start + batch_size, len(windows)))])
        batch = {k: v.to(device) for k, v in batch.items()}
        masked = batch["labels"] != -100
        h = _encode(mlm, batch["input_ids"], batch["attention_mask"])
        pred = _head(mlm)(h[masked]).argmax(-1)
        correct += (pred == batch["labels"][masked]).sum().item()
        total += masked.sum().item()
    torch.random.set_rng_state(gen_state)
    return correct / max(total, 1)


class AccuracyCurve(TrainerCallback):
    """Held-out masked-token accuracy every `every` steps: the curve shows when the head stops improving."""

    def __init__(self, mlm, windows, collator, seed: int, every: int):
        self.mlm, self.windows, self.collator, self.seed, self.every = mlm, windows, collator, seed, every
        self.curve: list[dict] = []

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            acc = masked_token_accuracy(self.mlm, self.windows, self.collator, self.seed)
            self.mlm.train()
            self.curve.append({"step": state.global_step, "masked_token_accuracy": round(acc, 4)})
            logger.info("fit-head step %d: held-out masked-token accuracy %.4f", state.global_step, acc)


def fit_mlm_head(out, teacher: str = "minilm", corpus: str = "wiki-offline", max_steps=300, batch_size=32, learning_rate=2e-3,
                 max_length=128, max_docs=None, eval_windows=256, seed=42, eval_every: int = 0,
                 dtype: str = "auto") -> dict:
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer

    from ..data.corpus import CorpusOptions, build_windows
    from ..model.families import UnknownFamilyError, family_for, head_module_names

    path = resolve_model_name(teacher)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"Could not load {teacher!r}: {e}") from None
    try:
        family = family_for(config)
    except UnknownFamilyError as e:
        raise MiniAlbertError(f"fit-head: {e}") from None
    if family.head is None:
        raise MiniAlbertError(f"fit-head: the {family.name} family has no masked-LM head layout in "
                              "minialbert/model/families.py.")
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    config.tie_word_embeddings = True  # the decoder shares the frozen input embeddings, as BERT's does
    # the family's own masked-LM class: the encoder's weights load, the head (absent) starts random
    mlm, info = AutoModelForMaskedLM.from_pretrained(path, config=config, output_loading_info=True)
    prefix = mlm.base_model_prefix + "."
    missing = [k for k in info.get("missing_keys", []) if k.startswith(prefix) and "pooler" not in k]
    if missing:
        raise MiniAlbertError(f"{teacher!r} lacks encoder weights {missing[:3]}; is it a {family.name} checkpoint?")
    mlm.tie_weights()
    mlm.requires_grad_(False)
    for name in head_module_names(mlm, family):  # only the head trains (the tied decoder stays frozen)
        for p_name, p in mlm.get_submodule(name).named_parameters():
            p.requires_grad_(p is not mlm.get_input_embeddings().weight)

    windows = build_windows(tokenizer, CorpusOptions(source=corpus, max_length=max_length, stride=max_length // 2,
                                                     windows_per_doc=2, seed=seed, max_docs=max_docs))
    n_eval = min(eval_windows, max(1, len(windows) // 10))
    split = windows.train_test_split(test_size=n_eval, seed=seed)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
    device = resolve_device("auto")
    before = masked_token_accuracy(mlm.to(device), split["test"], collator, seed)
    curve = AccuracyCurve(mlm, split["test"], collator, seed, eval_every)
    dtype = resolve_dtype(dtype)

    out = Path(out)
    args = training_arguments(out / "checkpoints", dtype, seed, max_steps=max_steps,
                              per_device_train_batch_size=batch_size, learning_rate=learning_rate,
                              warmup_steps=max(1, max_steps // 20), weight_decay=0.0, lr_scheduler_type="linear",
                              logging_steps=max(1, max_steps // 10), save_strategy="no",
                              remove_unused_columns=False)
    Trainer(model=HeadOnlyMLM(mlm), args=args, train_dataset=split["train"], data_collator=collator,
            callbacks=[curve]).train()
    after = masked_token_accuracy(mlm, split["test"], collator, seed)

    report = {"teacher": teacher, "corpus": corpus, "steps": max_steps, "held_out_windows": n_eval,
              "masked_token_accuracy_before": round(before, 4), "masked_token_accuracy_after": round(after, 4),
              "curve": [{"step": 0, "masked_token_accuracy": round(before, 4)}, *curve.curve], "dtype": dtype,
              "trainable_parameters": sum(p.numel() for p in mlm.parameters() if p.requires_grad)}
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # save_strategy="no": nothing to keep there
    mlm.requires_grad_(True)
    mlm.config.mlm_head_trained = max_steps > 0  # read by MiniAlbertForMaskedLM's loading warning
    mlm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_json(out / "fit_head.json", report)  # whole or not at all
    return report
