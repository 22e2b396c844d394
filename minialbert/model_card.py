"""Model cards: every folder the project saves (distilled student, fine-tuned model, sentence-
transformers export) gets a README.md with the metadata the Hugging Face Hub reads (base model =
the teacher, datasets, tags, measured metrics as model-index results) and how it was made. Built
with huggingface_hub's ModelCard / ModelCardData, so the YAML is the Hub's own format."""

from __future__ import annotations

import json
from pathlib import Path

from .packaged import PACKAGED_TEACHER_ALIASES, split_zip_teacher

PACKAGED_TEACHER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def hub_id(name: str | None) -> str | None:
    """A name as the Hub knows it: the packaged teacher's aliases -> its hub id; a local folder ->
    the teacher it was distilled from (its distillation.json), else None; a hub id unchanged."""
    if not name:
        return None
    if name.lower() in PACKAGED_TEACHER_ALIASES:
        return PACKAGED_TEACHER_HUB_ID
    if (optional := split_zip_teacher(name)) is not None and not Path(name).exists():
        return optional.hub_id
    path = Path(name)
    if path.exists():
        for info in (path / "distillation.json", path.parent / "distillation.json"):
            if info.is_file():
                return hub_id(json.loads(info.read_text()).get("teacher"))
        return None
    return name


def corpus_datasets(corpus: str | None) -> list[str]:
    """Hub dataset ids for a corpus option (hf:NAME[:...] -> NAME, each source of a + mix); local text has none."""
    return [part[3:].split(":")[0] for part in (corpus or "").split("+") if part.startswith("hf:")]


def public_corpus(corpus: str | None) -> str:
    """A corpus option as a card shows it: hub datasets and wiki-offline by name, a local file by its
    file name only (the folder it sat in means nothing to a reader)."""
    parts = []
    for part in (corpus or "?").split("+"):
        local = not part.startswith("hf:") and ("/" in part or "\\" in part)
        parts.append(f"{Path(part).name} (a local file)" if local else part)
    return " + ".join(parts)


def student_kind(config) -> tuple[str, str]:
    """What a MiniALBERT student is (docs/method.md, "Student kinds"): its kind (after "a") and its
    layers in words, as the cards write them: "a {kind} ({layers}, hidden ...)"."""
    N, g, r = config.num_hidden_layers, config.num_hidden_groups, config.relaxation_rank
    deltas = f"rank-{r} per-iteration deltas on {'its' if g == 1 else 'their'} linear maps"
    if g == N:
        plain = f"{N} unique layers, none shared"
        return f"plain {N}-layer MiniALBERT student", f"{plain}, plus {deltas}" if r else plain
    layers = "one shared layer" if g == 1 else f"{g} layers (ALBERT's layer groups)"
    if r:
        return "relaxed recursive MiniALBERT student", f"{layers} plus {deltas}, over {N} iterations"
    if g == 1:
        return "recursive MiniALBERT student", f"one shared layer applied {N} times"
    return "recursive MiniALBERT student", f"{layers} shared over {N} iterations"


def student_tags(config) -> list[str]:
    """Hub tags of a student's kind: only a student that applies a layer more than once is a
    recursive transformer, and one with per-iteration deltas a relaxed one."""
    if config.num_hidden_groups == config.num_hidden_layers:
        return []
    return ["relaxed-recursive-transformer"] if config.relaxation_rank else ["recursive-transformer"]


def write_model_card(folder, *, title: str, how: str, base_model: str | None = None, datasets=(), tags=(),
                     pipeline_tag: str | None = None, library_name: str = "transformers",
                     results: list[dict] | None = None) -> Path:
    """Write (or, where a library already wrote one, complete) `folder`/README.md. `results`:
    [{"task_type", "dataset_type", "dataset_name", "metric_type", "metric_value"}] for model-index."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    folder = Path(folder)
    path = folder / "README.md"
    card = (ModelCard.load(path) if path.exists()
            else ModelCard(f"---\nlibrary_name: {library_name}\n---\n\n# {title}\n"))
    data: ModelCardData = card.data
    base = hub_id(base_model)
    if base:
        data.base_model = base
    if datasets:
        data.datasets = sorted(set(datasets) | set(data.datasets or []))
    data.tags = sorted(set(tags) | set(data.tags or []) | {"minialbert"})
    data.library_name = data.library_name or library_name
    if pipeline_tag:
        data.pipeline_tag = data.pipeline_tag or pipeline_tag
    if results:
        data.model_name = data.model_name or title
        data.eval_results = [EvalResult(**r) for r in results]
    body = card.text.rstrip() + f"\n\n## How this model was made (minialbert)\n\n{how.strip()}\n"
    path.write_text(f"---\n{data.to_yaml()}\n---\n{body}")
    return path
