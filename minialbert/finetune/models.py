"""The model a fine-tuning run trains: a sequence or token classifier on the given encoder (a
distilled student, any Hugging Face encoder), or a siamese bi-encoder for sentence pairs, with
exits on every iteration for MiniALBERT's elastic depth."""

from __future__ import annotations

from ..data.glue import STSB_RANGE
from ..data.tasks import TaskData
from ..errors import MiniAlbertError
from ..hf_utils import quiet_transformers
from ..model.modeling_bi_encoder import BiEncoderForSequenceClassification


def parse_exits(spec: str, num_iterations: int) -> list[int] | None:
    """'none' -> None; 'all' -> 1..N; '1,3' -> [1, 3] (the last iteration always has its head)."""
    if spec in (None, "", "none"):
        return None
    if spec == "all":
        return list(range(1, num_iterations + 1))
    try:
        exits = sorted({int(x) for x in spec.split(",")} | {num_iterations})
    except ValueError:
        exits = []
    if not exits or not all(1 <= i <= num_iterations for i in exits):
        raise MiniAlbertError(f"--exits {spec!r}: give 'all', 'none' or iterations in 1..{num_iterations}, e.g. 2,4.")
    return exits


def load_task_model(model_name: str, path: str, config, data: TaskData, exits: str = "none",
                    pair_encoding: str = "cross", pooling: str = "mean"):
    """The model a run trains, on the encoder at `path` (resolved by the plan; `config` its
    configuration, read there; `model_name` as the user gave it, for messages)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    id2label = dict(enumerate(data.label_names))
    extra = {}
    if exits not in (None, "", "none"):
        if config.model_type != "minialbert":
            raise MiniAlbertError(f"--exits needs a MiniALBERT model (one shared layer, any depth); {model_name!r} "
                                  f"is {config.model_type!r}.")
        extra["exit_iterations"] = parse_exits(exits, config.num_hidden_layers)
    head_suffix = "ForTokenClassification" if data.kind == "ner" else "ForSequenceClassification"
    if any(a.endswith(head_suffix) for a in (config.architectures or [])) and config.num_labels != data.num_labels:
        raise MiniAlbertError(
            f"{model_name!r} is a classifier with {config.num_labels} labels but task {data.kind}/{len(data.label_names)} "
            f"needs {data.num_labels}; start from its base (distilled) checkpoint instead of a fine-tuned one.")
    if pair_encoding == "bi":
        return BiEncoderForSequenceClassification.from_encoder(
            path, data.num_labels, pooling, id2label=id2label, label2id={v: k for k, v in id2label.items()},
            problem_type=data.problem_type, similarity_scale=STSB_RANGE[1], **extra)
    auto = AutoModelForTokenClassification if data.kind == "ner" else AutoModelForSequenceClassification
    with quiet_transformers():  # the new task head is expected to be missing
        return auto.from_pretrained(path, num_labels=data.num_labels, id2label=id2label,
                                    label2id={v: k for k, v in id2label.items()}, problem_type=data.problem_type,
                                    **extra)
