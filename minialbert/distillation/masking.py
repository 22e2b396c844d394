"""The masked-LM batches of distillation: BERT masking with per-window seeds, so that a resumed run
masks exactly as an uninterrupted one."""

from __future__ import annotations

import torch
from transformers import DataCollatorForLanguageModeling, TrainerCallback

from ..compat import mask_tokens_with


class SeededMaskingCollator(DataCollatorForLanguageModeling):
    """BERT masking (15%, 80/10/10) with each window's mask drawn from a generator seeded by
    (seed, epoch, window index) instead of the global RNG. Why: on resume the Trainer collates the
    first batch before it restores the RNG state, so global-RNG masks (and everything after them)
    differ from the uninterrupted run's. With per-window seeds a run resumed at any checkpoint sees
    exactly the masks an uninterrupted one does."""

    def __init__(self, tokenizer, mlm_probability: float, seed: int):
        super().__init__(tokenizer, mlm=True, mlm_probability=mlm_probability)
        self.base_seed, self.epoch = seed, 0
        self.first_windows: list[int] = []  # this process's first window indices (data-parallel check)

    def __call__(self, examples):
        if "window_index" not in examples[0]:  # streaming corpora carry no index: global RNG
            return super().__call__(examples)
        indices = [int(e["window_index"]) for e in examples]
        if len(self.first_windows) < 32:
            self.first_windows.extend(indices[:32 - len(self.first_windows)])
        batch = self.tokenizer.pad([{k: v for k, v in e.items() if k != "window_index"} for e in examples],
                                   return_tensors="pt")
        special = batch.pop("special_tokens_mask")
        rows, labels = [], []
        for r, index in enumerate(indices):
            generator = torch.Generator().manual_seed(
                ((self.base_seed * 1_000_003 + self.epoch) * 1_000_000_007 + index) % (2 ** 63))
            ids, lab = mask_tokens_with(self, batch["input_ids"][r:r + 1].clone(), special[r:r + 1].bool(), generator)
            rows.append(ids)
            labels.append(lab)
        batch["input_ids"], batch["labels"] = torch.cat(rows), torch.cat(labels)
        return batch


class IndexedWindows(torch.utils.data.Dataset):
    """The windows, each with its index (the masking seed)."""

    def __init__(self, windows):
        self.windows = windows

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, i):
        return {**self.windows[i], "window_index": i}


class MaskingEpochCallback(TrainerCallback):
    """Tells the collator which epoch is running (a resumed run recomputes it from the step)."""

    def __init__(self, collator: SeededMaskingCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if train_dataloader is not None and len(train_dataloader):
            batches = len(train_dataloader) // args.gradient_accumulation_steps or 1
            self.collator.epoch = state.global_step // batches
