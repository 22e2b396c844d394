"""`minialbert predict`, `minialbert export` and the inference benchmarks (`bench infer`, `bench onnx`,
`bench depth`, `bench embed`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MiniAlbertError
from ..inference.options import BenchDepthOptions, BenchEmbedOptions, BenchInferOptions, BenchOnnxOptions
from ..options import add_dataclass_flags, options_kwargs
from ..records import write_json


@dataclass
class PredictOptions:
    """`minialbert predict`."""
    base: str = field(metadata={"required": True, "help": "base checkpoint (the distilled student)"})
    task_file: list[str] = field(metadata={"required": True, "action": "append", "metavar": "[NAME=]DIR",
                                           "help": "adapter task folder (OUT/runs/RUN/adapter) or the --out folder of "
                                                   "`finetune --adapter-tuning` (its best run's adapter is used), "
                                                   "optionally named (repeatable); the name defaults to "
                                                   "the task file's own task ('rte', 'ner:NCBI-disease'); two "
                                                   "tasks of one name are refused"})
    input: str = field(metadata={"required": True, "help": "JSON lines with text (and text_pair, task)"})
    output: str | None = field(default=None, metadata={"help": "write JSON lines here instead of stdout"})
    iterations: int | None = field(default=None, metadata={"metavar": "K", "help": (
        "run only the first K iterations (elastic depth; best with tasks tuned with --exits)")})
    early_exit: float | None = field(default=None, metadata={"metavar": "THRESHOLD", "help": (
        "stop each request at the first exit whose normalised entropy is <= THRESHOLD (0-1); the output says "
        "how many iterations it used")})


@dataclass
class ExportOptions:
    """`minialbert export`: one of --onnx, --sentence-transformers and --release."""
    model: str = field(metadata={"positional": True, "help": "checkpoint folder, adapter task folder, preset or hub "
                                                             "name"})
    onnx: str | None = field(default=None, metadata={"metavar": "OUT.onnx", "help": "write an ONNX file of --part"})
    part: str | None = field(default=None, metadata={"choices": ["base", "mlm", "task"], "help": (
        "with --onnx: which part of MODEL to write: base (the encoder: token states), mlm (the masked-LM head's "
        "vocabulary logits) or task (a fine-tuned head). Default: base for a masked-LM checkpoint such as a "
        "distilled student, task for a fine-tuned model or adapter task folder")})
    sentence_transformers: str | None = field(default=None, metadata={"metavar": "OUT", "help": (
        "write a sentence-transformers folder instead (the encoder + pooling; for a student, a bi-encoder or any "
        "encoder): SentenceTransformer(OUT) loads it after `import minialbert`, or with trust_remote_code=True "
        "where minialbert is not installed")})
    release: str | None = field(default=None, metadata={"metavar": "OUT", "help": (
        "write a student folder to publish instead: the base encoder in fp16 safetensors, tokenizer, modeling "
        "code, distillation.json and a model card (with --release-name and --release-command)")})
    release_name: str = field(default="minialbert-student", metadata={"help": "with --release: the model's name"})
    release_command: str = field(default="", metadata={"help": "with --release: the command that made it, for the card"})
    release_measured: str | None = field(default=None, metadata={"help": (
        "with --release: a JSON file for the card's measured figures: a `bench embed --compare` result, or any "
        "object whose top-level fields are listed as they are")})
    update_code: bool = field(default=False, metadata={"help": (
        "rewrite only the modeling code saved beside MODEL's weights (configuration_minialbert.py, "
        "modeling_minialbert.py) from this installed minialbert, so a folder loaded with trust_remote_code runs the "
        "current model code; weights, config and card are left as they are")})
    pooling: str = field(default="mean", metadata={"choices": ["mean", "cls"], "help": (
        "with --sentence-transformers: the pooling of the sentence embedding")})
    int8: bool = field(default=False, metadata={"help": "dynamic int8 quantisation of the weights"})
    opset: int = field(default=18, metadata={"help": (
        "ONNX opset of the file: 18 (the exporter's first; runs on every current ONNX Runtime) up to the installed "
        "onnx's newest")})
    iterations: int | None = field(default=None, metadata={"metavar": "K", "help": (
        "export a K-iteration graph (elastic depth) instead of all N iterations")})


def register(sub, bench_sub) -> None:
    p = sub.add_parser(
        "predict", help="Serve several adapter-tuned tasks from one frozen base.",
        description="Loads one base checkpoint and one or more adapter-only task files (from "
                    "`finetune --adapter-tuning`), then answers each JSON line of --input "
                    '({"task": NAME, "text": ..., "text_pair": ...}; task optional with one task file), '
                    "switching adapters without reloading the base. Writes JSON lines to stdout or --output.")
    add_dataclass_flags(p, PredictOptions)
    p.set_defaults(func=run_predict)

    p = sub.add_parser(
        "export", help="Export a model (its encoder, MLM head or task head) to ONNX, or for release.",
        description="Exports MODEL (a checkpoint folder with any head, an adapter-only task folder, a preset "
                    "or a hub name) with dynamic batch and sequence axes (a distilled student as its encoder, unless "
                    "--part mlm asks for its masked-LM head), checks its outputs against PyTorch "
                    "on inputs of another shape (fp32: max abs diff must be <= 1e-4, else nothing is "
                    "written), and prints a JSON report. The shared layer is stored once. --int8 writes "
                    "dynamically quantised int8 weights (onnxruntime) instead of fp32; use "
                    "`minialbert bench onnx --task ...` to measure its speed and dev-set accuracy.")
    add_dataclass_flags(p, ExportOptions)
    p.set_defaults(func=run_export)

    p = bench_sub.add_parser(
        "embed", help="Zero-shot STS-B dev score of pooled sentence embeddings (no fine-tuning).",
        description="Encodes every STS-B dev sentence alone, pools the final states (mean over real tokens, as "
                    "the MiniLM teacher was trained, or [CLS]), scores each pair by cosine similarity and reports "
                    "Spearman and Pearson (x 100) against the gold scores, the same score from the embedding "
                    "layer alone (the lexical baseline) and sentences/s on this machine. For MiniALBERT students, "
                    "saved bi-encoders, 'minilm', 'mpnet' and any Hugging Face encoder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, BenchEmbedOptions)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", default=None, help="also write the JSON result to this file (atomically)")
    p.set_defaults(func=run_bench_embed)

    p = bench_sub.add_parser(
        "onnx", help="PyTorch vs ONNX Runtime fp32 vs int8: latency, file size, dev-set accuracy.",
        description="Exports --model (and each --compare model) to ONNX fp32 and int8 in a temporary folder "
                    "and times PyTorch and both ONNX Runtime sessions round-robin on one batch. With --task and --data-dir (a fine-tuned "
                    "sequence classifier), also scores all three on the GLUE dev set and reports the int8 "
                    "change in points.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, BenchOnnxOptions)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_bench_onnx)

    p = bench_sub.add_parser(
        "infer", help="Latency/throughput of a student and compared models in one run.",
        description="Times inference (torch.inference_mode, fused attention, no maps or hidden-state lists) "
                    "for --model and each --compare model: a preset (random weights), bert-base or "
                    "bert-6layer (random BERT shapes, no download), or a checkpoint folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, BenchInferOptions)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_bench_infer)

    p = bench_sub.add_parser(
        "depth", help="One fine-tuned checkpoint at every depth: score vs latency for K = 1..N and early exit.",
        description="For a MiniALBERT classifier (best fine-tuned with --exits all): dev score, median latency per "
                    "batch and mean iterations for each fixed depth K and each early-exit threshold, measured in "
                    "one run, configurations interleaved batch by batch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, BenchDepthOptions)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_bench_depth)


def run_predict(args) -> int:
    from ..inference import MultiTaskModel

    server = MultiTaskModel(args.base)
    for item in args.task_file:
        name, _, path = item.rpartition("=")
        server.add_task(name or None, path)
    default_task = next(iter(server.tasks)) if len(server.tasks) == 1 else None
    path = Path(args.input)
    if not path.is_file():
        raise MiniAlbertError(f"--input {path} does not exist.")
    lines = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            text = req["text"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise MiniAlbertError(f"{path}, line {n}: expected a JSON object with a 'text' field.") from None
        wrong = [k for k in ("text", "text_pair", "task") if k in req and not isinstance(req[k], str)]
        if wrong:
            raise MiniAlbertError(f"{path}, line {n}: field(s) {', '.join(wrong)} must be strings (got "
                                  f"{', '.join(type(req[k]).__name__ for k in wrong)}).")
        task = req.get("task", default_task)
        if task is None:
            raise MiniAlbertError(f"{path}, line {n}: several tasks are loaded ({', '.join(server.tasks)}); say "
                                  "which with a 'task' field.")
        pair = [req["text_pair"]] if "text_pair" in req else None
        labels, scores, used = server.predict_with_scores(task, [text], pair, iterations=args.iterations,
                                                          early_exit=args.early_exit)
        answer = {"task": task, "prediction": labels[0]}
        if scores[0] is not None:
            answer["score"] = round(scores[0], 4) if isinstance(scores[0], float) else [round(s, 4) for s in scores[0]]
        lines.append(json.dumps({**answer, "iterations": used[0]}))
    text = "\n".join(lines) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


def run_bench_embed(args) -> int:
    from ..inference.embeddings import bench_embed

    result = bench_embed(**options_kwargs(BenchEmbedOptions, args))
    if args.out:
        write_json(args.out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['model']}: STS-B dev zero-shot Spearman {result['spearman']:.2f}, Pearson "
              f"{result['pearson']:.2f} ({result['pooling']} pooling; embedding layer alone: "
              f"{result['embedding_layer_spearman']:.2f}); {result['sentences_per_s']:.1f} sentences/s, "
              f"{result['parameters']:,} parameters")
        for k, row in result.get("depths", {}).items():
            print(f"  K={k}: Spearman {row['spearman']:.2f}, {row['sentences_per_s']:.1f} sentences/s")
        for name, row in result.get("compare", {}).items():
            print(f"{name}: Spearman {row['spearman']:.2f}, Pearson {row['pearson']:.2f}, {row['sentences_per_s']:.1f} "
                  f"sentences/s, {row['parameters']:,} parameters; {result['model']} keeps "
                  f"{row['spearman_retention']:.3f} of its Spearman at {row['speedup']:.2f}x its speed with "
                  f"{row['parameter_ratio']:.3f} of its parameters")
    return 0


def run_bench_infer(args) -> int:
    from ..inference.bench import bench_infer

    result = bench_infer(**options_kwargs(BenchInferOptions, args))
    print(json.dumps(result, indent=2) if args.json else json.dumps(result))
    return 0


def run_bench_depth(args) -> int:
    from ..inference.depth import bench_depth

    result = bench_depth(**options_kwargs(BenchDepthOptions, args))
    print(json.dumps(result, indent=2) if args.json else json.dumps(result))
    return 0


def run_export(args) -> int:
    from ..inference.export import export_onnx

    if sum(x is not None for x in (args.onnx, args.sentence_transformers, args.release)) + args.update_code != 1:
        raise MiniAlbertError("export needs exactly one target: --onnx OUT.onnx, --sentence-transformers OUT, "
                              "--release OUT or --update-code.")
    if args.part and not args.onnx:
        raise MiniAlbertError("--part chooses what --onnx writes; give --onnx OUT.onnx with it.")
    if args.update_code:
        from ..inference.export import update_model_code

        print(json.dumps(update_model_code(args.model), indent=2))
        return 0
    if args.release:
        from ..inference.embeddings import embed_figures
        from ..inference.export import export_release

        measured = None
        if args.release_measured:
            path = Path(args.release_measured)
            try:
                measured = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise MiniAlbertError(f"--release-measured {path}: not a readable JSON file ({e}); give the JSON that "
                                      "`minialbert bench embed --out` wrote, or leave the option out.") from None
            if not isinstance(measured, dict):
                raise MiniAlbertError(f"--release-measured {path}: expected a JSON object, got {type(measured).__name__}.")
        if measured and "spearman" in measured:  # a `bench embed` result
            measured = embed_figures(measured)
        print(json.dumps(export_release(args.model, args.release, args.release_name, args.release_command,
                                        measured), indent=2))
        return 0
    if args.sentence_transformers:
        from ..inference.embeddings import export_sentence_transformers

        print(json.dumps(export_sentence_transformers(args.model, args.sentence_transformers, args.pooling), indent=2))
        return 0
    print(json.dumps(export_onnx(args.model, args.onnx, int8=args.int8, opset=args.opset,
                                 iterations=args.iterations, part=args.part), indent=2))
    return 0


def run_bench_onnx(args) -> int:
    from ..inference.bench import bench_onnx

    result = bench_onnx(**options_kwargs(BenchOnnxOptions, args))
    print(json.dumps(result, indent=2) if args.json else json.dumps(result))
    return 0
