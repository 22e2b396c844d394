"""`minialbert info` and `minialbert import-reference`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MiniAlbertError
from ..options import add_dataclass_flags


@dataclass
class InfoOptions:
    """`minialbert info`."""
    model: str = field(metadata={"positional": True, "help": (
        "preset name (minialbert-768, -312, -128, each also -noadapters), a checkpoint directory, or a model name "
        "such as minilm")})
    json: bool = field(default=False, metadata={"help": "print one JSON object instead of a table"})


@dataclass
class ImportReferenceOptions:
    """`minialbert import-reference`."""
    src_dir: str = field(metadata={"positional": True, "help": "folder with the reference config.json and weights"})
    out_dir: str = field(metadata={"positional": True, "help": "where to write the MiniALBERT checkpoint "
                                                               "(safetensors)"})


def register(sub) -> None:
    p = sub.add_parser("info", help="Parameter table of a preset or a saved MiniALBERT checkpoint.",
                       description="Show the configuration and exact parameter counts of a preset "
                                   "(e.g. minialbert-128) or a MiniALBERT checkpoint directory.")
    add_dataclass_flags(p, InfoOptions)
    p.set_defaults(func=run_info)

    p = sub.add_parser("import-reference",
                       help="Convert a checkpoint of the authors' reference implementation.",
                       description="Convert a checkpoint saved by the authors' MiniALBERT code "
                                   "(albert-type config.json with use_adapter/reduction_factor; "
                                   "e.g. nlpie/miniALBERT-128) into a MiniALBERT checkpoint.")
    add_dataclass_flags(p, ImportReferenceOptions)
    p.set_defaults(func=run_import_reference)


def load_config(model: str):
    """A config from a preset name, 'minilm' (the packaged teacher) or a checkpoint directory."""
    from transformers import AutoConfig

    from ..checkpoints import resolve_model_name
    from ..model import PRESETS, preset_config

    if model in PRESETS:
        return preset_config(model)
    not_found = (f"{model!r} is neither a preset ({', '.join(sorted(PRESETS))}), a packaged teacher ('minilm', "
                 "'mpnet'), a released student ('minialbert-minilm'), nor a folder with a config.json")
    try:  # aliases; a damaged config.json or an unreachable hub is named there
        path = Path(resolve_model_name(model))
    except MiniAlbertError as e:
        raise MiniAlbertError(f"{not_found}; {e}") from None
    if not (path / "config.json").is_file():
        raise MiniAlbertError(f"{not_found}.")
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("model_type") == "albert" and "use_adapter" in cfg:
        raise MiniAlbertError(f"{path / 'config.json'} is a reference MiniALBERT checkpoint; run "
                              "`minialbert import-reference` first.")
    try:
        return AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"{path / 'config.json'}: {e}") from None


def model_info(model: str) -> dict:
    import torch
    from transformers import AutoModel

    from ..model import MiniAlbertModel, parameter_breakdown

    config = load_config(model)
    if config.model_type != "minialbert":  # a teacher or baseline (e.g. the packaged MiniLM): totals only
        with torch.device("meta"):
            base = AutoModel.from_config(config)
        embeddings = sum(p.numel() for p in base.get_input_embeddings().parameters())
        total = sum(p.numel() for p in base.parameters())
        keys = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings")
        return {"model": model, "parameters": {"base": total, "word_embeddings": embeddings},
                "config": {k: getattr(config, k, None) for k in keys}}
    with torch.device("meta"):  # shapes only: no memory for weights
        counts = parameter_breakdown(MiniAlbertModel(config))
    counts = {k: v for k, v in counts.items() if k not in ("total_with_head", "task_head")}
    keys = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "use_adapters", "adapter_reduction_factor", "max_position_embeddings")
    return {"model": model, "parameters": counts, "config": {k: getattr(config, k) for k in keys}}


def run_info(args) -> int:
    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c, p = info["config"], info["parameters"]
    if "model_type" in c:
        print(f"{args.model}: {c['model_type']} with {c['num_hidden_layers']} layers, H={c['hidden_size']} "
              f"heads={c['num_attention_heads']} FFN={c['intermediate_size']} V={c['vocab_size']}")
        print(f"  base model (no task head)  {p['base']:>12,}  ({p['base'] / 1e6:.2f}M)")
        print(f"  word embeddings            {p['word_embeddings']:>12,}  ({p['word_embeddings'] / 1e6:.2f}M)")
        return 0
    print(f"{args.model}: E={c['embedding_size']} H={c['hidden_size']} N={c['num_hidden_layers']} "
          f"heads={c['num_attention_heads']} FFN={c['intermediate_size']} V={c['vocab_size']} "
          f"adapters={'yes (r=%d)' % c['adapter_reduction_factor'] if c['use_adapters'] else 'no'} "
          f"layer groups={c.get('num_hidden_groups', 1)} relaxation rank={c.get('relaxation_rank', 0)}")
    layers = "shared layer (stored once)" if c.get("num_hidden_groups", 1) == 1 else "layers (one per group)"
    rows = [("base model (no task head)", p["base"]), ("  embeddings (+ projection)", p["embeddings"]),
            (f"  {layers}", p["shared_layer"]), ("  relaxation deltas", p["relaxation_deltas"]),
            ("  adapters", p["adapters"]),
            ("adapter tuning trainable (without head)", p["adapter_tuning_trainable_without_head"])]
    width = max(len(r[0]) for r in rows)
    for name, n in rows:
        print(f"  {name:<{width}}  {n:>12,}  ({n / 1e6:.2f}M)")
    return 0


def run_import_reference(args) -> int:
    from ..model.reference_import import import_reference_checkpoint

    model = import_reference_checkpoint(args.src_dir, args.out_dir)
    n = sum(p.numel() for p in model.minialbert.parameters())
    print(f"Imported {args.src_dir} -> {args.out_dir} (MiniAlbertForMaskedLM, base {n:,} parameters).")
    return 0
