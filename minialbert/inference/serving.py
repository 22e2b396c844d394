"""Multi-task serving: one frozen base in memory plus several adapter-only task files; a request
for a task swaps in that task's adapters and head (module references, no reload of the base)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import MiniAlbertError
from ..finetune.adapter_files import read_adapter_task
from ..model import MiniAlbertAdapters, MiniAlbertModel

_ADAPTER_PREFIX = "minialbert.encoder.adapters."


@dataclass
class TaskModule:
    name: str
    adapters: MiniAlbertAdapters
    classifier: nn.Linear
    head: str  # sequence-classification | token-classification
    id2label: dict[int, str]
    problem_type: str | None


class MultiTaskModel:
    """`MultiTaskModel(base_dir)`, `.add_task(name, task_dir)`, `.predict(name, texts, text_pairs=None)`."""

    def __init__(self, base: str):
        from transformers import AutoTokenizer

        from ..data.offline import resolve_model_name
        from ..hf_utils import quiet_transformers

        path = resolve_model_name(base)
        with quiet_transformers():
            self.base = MiniAlbertModel.from_pretrained(path).eval().requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.base_path = str(path)
        self.tasks: dict[str, TaskModule] = {}

    def add_task(self, name: str, task_dir) -> TaskModule:
        cfg, state = read_adapter_task(task_dir)
        config = self.base.config.__class__(**{**self.base.config.to_dict(), "use_adapters": True})
        adapters = MiniAlbertAdapters(config)
        adapter_state = {k[len(_ADAPTER_PREFIX):]: v for k, v in state.items() if k.startswith(_ADAPTER_PREFIX)}
        head_state = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("classifier.")}
        try:
            adapters.load_state_dict(adapter_state)
            classifier = nn.Linear(config.hidden_size, cfg["num_labels"])
            classifier.load_state_dict(head_state)
        except RuntimeError as e:
            raise MiniAlbertError(f"{task_dir} does not fit the base {self.base_path}: {e}") from None
        module = TaskModule(name, adapters.eval(), classifier.eval(), cfg["head"],
                            {int(k): v for k, v in cfg["id2label"].items()}, cfg.get("problem_type"))
        self.tasks[name] = module
        return module

    @torch.inference_mode()
    def logits(self, name: str, texts, text_pairs=None, max_length: int = 128) -> torch.Tensor:
        if name not in self.tasks:
            raise MiniAlbertError(f"Unknown task {name!r}; loaded tasks: {', '.join(self.tasks) or 'none'}.")
        task = self.tasks[name]
        enc = self.tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None, padding=True,
                             truncation=True, max_length=max_length, return_tensors="pt")
        self.base.encoder.adapters = task.adapters  # swap: the base itself is never reloaded
        hidden = self.base(**enc).last_hidden_state
        return task.classifier(hidden[:, 0] if task.head == "sequence-classification" else hidden)

    def predict(self, name: str, texts, text_pairs=None) -> list:
        logits = self.logits(name, texts, text_pairs)
        task = self.tasks[name]
        if task.problem_type == "regression":
            return logits.squeeze(-1).tolist()
        return [task.id2label[i] for i in logits.argmax(-1).view(-1).tolist()] \
            if task.head == "sequence-classification" else \
            [[task.id2label[i] for i in row] for row in logits.argmax(-1).tolist()]
