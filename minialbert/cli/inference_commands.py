"""`minialbert predict` and `minialbert bench infer`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import MiniAlbertError


def register(sub, bench_sub) -> None:
    p = sub.add_parser(
        "predict", help="Serve several adapter-tuned tasks from one frozen base.",
        description="Loads one base checkpoint and one or more adapter-only task files (from "
                    "`finetune --adapter-tuning`), then answers each JSON line of --input "
                    '({"task": NAME, "text": ..., "text_pair": ...}; task optional with one task file), '
                    "switching adapters without reloading the base. Writes JSON lines to stdout or --output.")
    p.add_argument("--base", required=True, help="base checkpoint (the distilled student)")
    p.add_argument("--task-file", action="append", required=True, metavar="[NAME=]DIR",
                   help="adapter task folder, optionally named (repeatable)")
    p.add_argument("--input", required=True, help="JSON lines with text (and text_pair, task)")
    p.add_argument("--output", default=None, help="write JSON lines here instead of stdout")
    p.set_defaults(func=run_predict)

    p = bench_sub.add_parser(
        "infer", help="Latency/throughput of a student and compared models in one run.",
        description="Times inference (torch.inference_mode, fused attention, no maps or hidden-state lists) "
                    "for --model and each --compare model: a preset (random weights), bert-base or "
                    "bert-6layer (random BERT shapes, no download), or a checkpoint folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="minialbert-768")
    p.add_argument("--compare", nargs="*", default=["bert-base", "bert-6layer"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the models first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_bench_infer)


def run_predict(args) -> int:
    from ..inference import MultiTaskModel

    server = MultiTaskModel(args.base)
    for item in args.task_file:
        name, _, path = item.rpartition("=")
        server.add_task(name or Path(path).name, path)
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
        task = req.get("task", default_task)
        if task is None:
            raise MiniAlbertError(f"{path}, line {n}: several tasks are loaded; say which with a 'task' field.")
        pair = [req["text_pair"]] if "text_pair" in req else None
        lines.append(json.dumps({"task": task, "prediction": server.predict(task, [text], pair)[0]}))
    text = "\n".join(lines) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


def run_bench_infer(args) -> int:
    from ..inference.bench import bench_infer

    result = bench_infer(args.model, args.compare, args.batch, args.seq, args.reps, args.compile)
    print(json.dumps(result, indent=2) if args.json else json.dumps(result))
    return 0
