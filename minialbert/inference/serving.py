"""Multi-task serving: one frozen base in memory plus several adapter-only task files. Each task's
adapters are kept inside the base by name (`MiniAlbertModel.add_adapter`, PEFT-style) and each
request names the set it runs with, so requests for different tasks can be served from several
threads at once; the base is never reloaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import MiniAlbertError
from ..model.adapters import is_adapter_task, read_adapter_task
from ..model import MiniAlbertAdapters, MiniAlbertModel


@dataclass
class TaskModule:
    name: str
    adapters: MiniAlbertAdapters
    classifier: nn.Linear
    head: str  # sequence-classification | token-classification
    id2label: dict[int, str]
    problem_type: str | None
    exits: dict[int, nn.Linear]  # iteration -> its exit classifier (elastic depth); the last uses `classifier`
    pooling: str | None = None  # bi-encoder tasks: how a sentence embedding is pooled
    similarity_scale: float = 5.0  # bi-encoder regression: the score is scale * cos(u, v)
    source: str = ""  # the task folder it was loaded from

    def exit_head(self, iteration: int) -> nn.Linear:
        return self.exits.get(iteration, self.classifier)


def find_adapter_task(folder) -> Path:
    """The adapter task folder in `folder`: `folder` itself, or, for the output folder of `finetune
    --adapter-tuning`, the adapter of its best run (OUT/runs/RUN/adapter, RUN from OUT/results.json)."""
    folder = Path(folder)
    if is_adapter_task(folder):
        return folder
    results = folder / "results.json"
    if results.is_file():
        from ..records import RESULTS_FIELDS, read_json

        run = read_json(results, RESULTS_FIELDS, "Write it again with `minialbert finetune`.")["best"].get("best_run")
        adapter = folder / "runs" / str(run) / "adapter"
        if run and is_adapter_task(adapter):
            return adapter
        raise MiniAlbertError(f"{folder} is a finetune output folder, but its best run's adapter {adapter} is not "
                              "there: was it tuned with --adapter-tuning (full fine-tuning saves OUT/runs/RUN/model, "
                              "served with `export` or from_pretrained), and with --save-models best or all?")
    raise MiniAlbertError(f"{folder} is not an adapter task folder (no minialbert_adapter.json) nor the output folder "
                          "of `minialbert finetune --adapter-tuning` (no results.json). Give the finetune --out "
                          "folder or its OUT/runs/RUN/adapter.")


def readable_labels(task: str | None, id2label: dict) -> dict:
    """Label names a reader understands: a GLUE task whose files store 0/1 (SST-2, CoLA, MRPC, QQP, WNLI)
    answers with the names the Hugging Face glue dataset gives those classes."""
    from ..data.glue import LABEL_NAMES

    names = LABEL_NAMES.get(task or "")
    if names and [id2label[i] for i in sorted(id2label)] == [str(i) for i in range(len(names))]:
        return dict(enumerate(names))
    return id2label


class MultiTaskModel:
    """`MultiTaskModel(base_dir)`, `.add_task(name, task_dir)`, `.predict(name, texts, text_pairs=None)`."""

    def __init__(self, base: str):
        from transformers import AutoTokenizer

        from ..checkpoints import resolve_model_name
        from ..hf_utils import quiet_transformers

        path = resolve_model_name(base)
        with quiet_transformers():
            self.base = MiniAlbertModel.from_pretrained(path).eval().requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.base_path = str(path)
        self.tasks: dict[str, TaskModule] = {}

    def add_task(self, name: str | None, task_dir) -> TaskModule:
        """Load a task file with the one adapter-file loader (`load_adapter_model`, over this base),
        keep its adapters inside the base by name and its head(s) here. `name`: None takes the task
        file's own (its `task` field: 'rte', 'ner:NCBI-disease'; the folder's name for files of
        earlier versions); a name already loaded, or the base's own 'default', is refused."""
        from ..model.adapters import load_adapter_model
        from ..model.modeling_minialbert import DEFAULT_ADAPTER

        task_dir = find_adapter_task(task_dir)
        cfg, _ = read_adapter_task(task_dir)
        name = name or cfg.task or Path(task_dir).resolve().name
        if name == DEFAULT_ADAPTER:
            raise MiniAlbertError(f"{task_dir}: the task name {DEFAULT_ADAPTER!r} is the base's own adapter set; "
                                  f"name the task another way with NAME={task_dir}.")
        if name in self.tasks:
            raise MiniAlbertError(f"Two task files are named {name!r} ({self.tasks[name].source} and {task_dir}); "
                                  f"a request for {name!r} would reach only one of them. Name them apart with "
                                  f"NAME=DIR, e.g. --task-file {name}-2={task_dir}.")
        try:
            model = load_adapter_model(task_dir, base_model=self.base_path).requires_grad_(False)
        except RuntimeError as e:
            raise MiniAlbertError(f"{task_dir} does not fit the base {self.base_path}: {e}") from None
        bi = cfg.head == "bi-encoder"
        adapters = (model.encoder if bi else model.minialbert).encoder.adapter_set("default")
        self.base.add_adapter(name, adapters)  # named inside the base, PEFT-style; chosen per request
        exits = {int(i): head for i, head in model.exit_classifiers.items()}
        module = TaskModule(name, adapters, model.classifier, cfg.head, readable_labels(cfg.task, cfg.labels["id2label"]),
                            cfg.problem_type,
                            exits, cfg.pooling, getattr(model.config, "similarity_scale", 5.0), str(task_dir))
        self.tasks[name] = module
        return module

    @torch.inference_mode()
    def logits_and_depth(self, name: str, texts, text_pairs=None, max_length: int = 128,
                         iterations: int | None = None, early_exit: float | None = None):
        """Logits and the iterations each example used: all N, a fixed `iterations` K (answered by
        exit K's head when the task trained one), or per-example early exit at normalised entropy
        `early_exit` (tasks fine-tuned with --exits)."""
        from ..model.modeling_minialbert import early_exit_logits

        if name not in self.tasks:
            raise MiniAlbertError(f"Unknown task {name!r}; loaded tasks: {', '.join(self.tasks) or 'none'}.")
        task = self.tasks[name]
        N = self.base.config.num_hidden_layers
        if iterations is not None and not 1 <= iterations <= N:
            raise MiniAlbertError(f"--iterations {iterations} must lie in 1..{N}.")
        if task.head == "bi-encoder":
            return self._bi_encoder_logits(task, texts, text_pairs, max_length, iterations or N, early_exit)
        enc = self.tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None, padding=True,
                             truncation=True, max_length=max_length, return_tensors="pt")
        token_level = task.head != "sequence-classification"
        if early_exit is not None:
            if task.problem_type == "regression":
                raise MiniAlbertError(f"Task {name!r} is a regression: early exit needs class probabilities; use "
                                      "--iterations K.")
            return early_exit_logits(self.base, task.exit_head, list(task.exits), token_level, enc["input_ids"],
                                     enc["attention_mask"], enc.get("token_type_ids"), early_exit, adapter=name)
        K = iterations or N
        hidden = self.base(**enc, num_iterations=K, adapter=name).last_hidden_state  # no shared state is changed
        return task.exit_head(K)(hidden if token_level else hidden[:, 0]), torch.full((len(enc["input_ids"]),), K)

    def _bi_encoder_logits(self, task: TaskModule, texts, text_pairs, max_length: int, K: int, early_exit):
        """Each sentence encoded alone by the base with the task's adapters, pooled, then the pair head."""
        from ..model.modeling_bi_encoder import pair_logits
        from ..model.pooling import pool

        if text_pairs is None:
            raise MiniAlbertError(f"Task {task.name!r} is a bi-encoder over sentence pairs: give text_pair too.")
        if early_exit is not None:
            raise MiniAlbertError(f"Task {task.name!r} is a bi-encoder: early exit is not available; use "
                                  "--iterations K.")

        def embed(sentences):
            enc = self.tokenizer(list(sentences), padding=True, truncation=True, max_length=max_length,
                                 return_tensors="pt")
            hidden = self.base(**enc, num_iterations=K, adapter=task.name).last_hidden_state
            return pool(hidden, enc["attention_mask"], task.pooling)

        logits = pair_logits(embed(texts), embed(text_pairs), task.exit_head(K), task.similarity_scale)
        return logits, torch.full((len(texts),), K)

    def logits(self, name: str, texts, text_pairs=None, max_length: int = 128, **depth) -> torch.Tensor:
        return self.logits_and_depth(name, texts, text_pairs, max_length, **depth)[0]

    def predict(self, name: str, texts, text_pairs=None, **depth) -> list:
        return self.predict_with_depth(name, texts, text_pairs, **depth)[0]

    def predict_with_depth(self, name: str, texts, text_pairs=None, **depth) -> tuple[list, list[int]]:
        """Labels (or scores) and the iterations each example used."""
        labels, _, used = self.predict_with_scores(name, texts, text_pairs, **depth)
        return labels, used

    def predict_with_scores(self, name: str, texts, text_pairs=None, **depth) -> tuple[list, list, list[int]]:
        """Labels (or regression scores), the probability of each chosen label (None for a regression)
        and the iterations each example used."""
        logits, used = self.logits_and_depth(name, texts, text_pairs, **depth)
        task = self.tasks[name]
        if task.problem_type == "regression":
            return logits.squeeze(-1).tolist(), [None] * len(logits), used.tolist()
        probs, labels = logits.float().softmax(-1).max(-1)
        probs, labels = probs.tolist(), labels.tolist()
        if task.head in ("sequence-classification", "bi-encoder"):
            return [task.id2label[i] for i in labels], probs, used.tolist()
        return [[task.id2label[i] for i in row] for row in labels], probs, used.tolist()
