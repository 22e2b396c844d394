"""`minialbert export`: ONNX export of a base model or any task head, with optional int8 weights.

Export uses PyTorch's standard exporter (`torch.onnx.export`, torch.export-based) with dynamic batch
and sequence axes; int8 uses onnxruntime's dynamic quantisation. Both are library calls: what we
add is choosing the model class, a parity check against PyTorch, and atomic writes. Because the
student's one shared layer is one set of parameters, the exporter stores it once: the file size
tracks unique parameters, not N x layer (tested).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import MiniAlbertError
from ..records import replace_dir, write_bytes
from .loading import example_inputs, is_pair_model, load_model, set_depth

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
PARITY_TOLERANCE = 1e-4  # fp32 ONNX vs PyTorch, max absolute difference
MIN_OPSET = 18  # the torch.export-based exporter's first opset; older ones need a lossy down-conversion


class OnnxWrapper(nn.Module):
    """Fixed positional inputs and a tuple of tensors out: the form an ONNX graph has."""

    def __init__(self, model: nn.Module, output_names: list[str], input_names=INPUT_NAMES):
        super().__init__()
        self.model = model
        self.output_names, self.input_names = output_names, list(input_names)

    def forward(self, *inputs):
        out = self.model(**dict(zip(self.input_names, inputs)))
        return tuple(out[k] for k in self.output_names)


def _output_names(model: nn.Module, inputs: dict) -> list[str]:
    with torch.inference_mode():
        out = model(**inputs)
    return [k for k, v in out.items() if isinstance(v, torch.Tensor)]


def onnx_session(path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session, inputs: dict) -> list[np.ndarray]:
    wanted = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v.numpy() for k, v in inputs.items() if k in wanted})


@contextlib.contextmanager
def _quiet_export():
    """The exporter and the quantiser are chatty (progress prints, a log line per node, shape-naming
    warnings); keep the console readable. Errors still propagate."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notices
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


PARTS = {"base": "the encoder (token states)", "mlm": "the masked-LM head (vocabulary logits)",
         "task": "a task head (fine-tuned logits)"}


def model_part(model: nn.Module) -> str:
    """Which part a loaded model is: 'base' (an encoder alone), 'mlm' or 'task'."""
    if type(model).__name__.endswith("ForMaskedLM"):
        return "mlm"
    return "base" if getattr(model, "base_model", model) is model else "task"


def select_part(model: nn.Module, part: str | None, name: str) -> tuple[nn.Module, str]:
    """The module `export --part` writes. Default: the encoder of a masked-LM checkpoint (a distilled
    student: what a user embeds or fine-tunes; its MLM head is three times its size and only
    distillation reads it), the head of a fine-tuned model, a base model as it is."""
    has = model_part(model)
    chosen = part or ("base" if has == "mlm" else has)
    if chosen not in PARTS:
        raise MiniAlbertError(f"--part {chosen!r}: choose one of {', '.join(PARTS)}.")
    if chosen == has:
        return model, chosen
    if chosen == "base":
        return model.base_model, "base"
    raise MiniAlbertError(f"--part {chosen}: {name!r} ({type(model).__name__}) has no {PARTS[chosen]}; it holds "
                          f"{PARTS[has]}{' and the encoder' if has != 'base' else ''}. Use --part {has}"
                          f"{' or --part base' if has != 'base' else ''}.")


def export_onnx(name: str, out, int8: bool = False, opset: int = 18, model: nn.Module | None = None,
                fp32_copy=None, iterations: int | None = None, part: str | None = None) -> dict:
    """Export `name` to `out` (fp32, or int8 weights with `int8`); return a report with the parity
    against PyTorch measured on inputs of a different shape from the export example. `model`: the
    already loaded `load_model(name)`, if the caller has it; `fp32_copy`: with `int8`, keep the
    intermediate fp32 file there too, so that one export serves both precisions. `part`: 'base',
    'mlm' or 'task' of the model loaded from `name` (select_part; a given `model` is written as it is)."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise MiniAlbertError(f"--onnx {out}: the output file name must end in .onnx.")
    if out.is_dir():
        raise MiniAlbertError(f"--onnx {out} is a folder; give a file name such as {out / 'model.onnx'}.")
    _require_onnx_packages()
    import onnx

    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise MiniAlbertError(f"--opset {opset} is not supported: PyTorch's exporter writes opsets {MIN_OPSET} to "
                              f"{onnx.defs.onnx_opset_version()} (the installed onnx); {MIN_OPSET} runs on every "
                              "current ONNX Runtime.")
    out.parent.mkdir(parents=True, exist_ok=True)
    if model is None:
        model, part = select_part(load_model(name), part, name)
    else:
        part = model_part(model)
    model = model.eval()
    set_depth(model, iterations, required=True)  # elastic depth: the graph runs K iterations, answers with exit K
    tokenizer_warning = _missing_tokenizer(name)
    vocab = model.config.vocab_size
    pair = is_pair_model(model)  # a bi-encoder: both sentences in, the pair's logits out
    example = example_inputs(2, 16, vocab, pair=pair)
    names = _output_names(model, example)
    wrapper = OnnxWrapper(model, names, list(example)).eval()
    tmp = out.with_name(out.stem + ".fp32.tmp.onnx")
    int8_tmp = out.with_name(out.stem + ".int8.tmp.onnx")
    batch, seq, seq_b = torch.export.Dim("batch"), torch.export.Dim("sequence"), torch.export.Dim("sequence_b")
    try:
        with _quiet_export():
            try:
                torch.onnx.export(wrapper, tuple(example.values()), str(tmp),
                                  input_names=list(example), output_names=names, opset_version=opset,
                                  dynamic_shapes=(tuple({0: batch, 1: seq_b if k.endswith("_b") else seq}
                                                        for k in example),),  # forward(*inputs): one tuple
                                  dynamo=True, external_data=False)
            except Exception as e:  # the exporter raises many types; name the model and keep the reason
                raise MiniAlbertError(f"ONNX export of {name!r} ({type(model).__name__}) failed: "
                                      f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
        _strip_debug_metadata(tmp)
        check = example_inputs(3, 37, vocab, seed=1, pad_last=9, pair=pair)  # another shape: dynamic axes
        with torch.inference_mode():
            reference = [t.numpy() for t in wrapper(*check.values())]
        fp32_diff = max(float(np.abs(a - b).max()) for a, b in zip(run_onnx(onnx_session(tmp), check), reference))
        if fp32_diff > PARITY_TOLERANCE:
            raise MiniAlbertError(f"ONNX export of {name!r}: outputs differ from PyTorch by {fp32_diff:.2e} "
                                  f"(> {PARITY_TOLERANCE:g}); the file was not written. Please report this.")
        report = {"model": name, "part": part, "class": type(model).__name__, "outputs": names, "opset": _file_opset(tmp),
                  "iterations": getattr(model.config, "inference_iterations", None)
                  or getattr(model.config, "num_hidden_layers", None),
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "fp32_max_abs_diff": fp32_diff, "int8": int8}
        if tokenizer_warning:
            report["warning"] = tokenizer_warning
        final = tmp
        if int8:
            final = int8_tmp
            quantize_int8(tmp, final)
            report["int8_max_abs_diff"] = max(
                float(np.abs(a - b).max()) for a, b in zip(run_onnx(onnx_session(final), check), reference))
            if fp32_copy is not None:
                os.replace(tmp, fp32_copy)
                report.update(fp32_file=str(fp32_copy), fp32_file_bytes=Path(fp32_copy).stat().st_size)
        os.replace(final, out)  # the file appears whole or not at all
    finally:  # whatever failed, no temporary file is left behind
        tmp.unlink(missing_ok=True)
        int8_tmp.unlink(missing_ok=True)
    report.update(file=str(out), file_bytes=out.stat().st_size)
    return report


def _file_opset(path) -> int:
    """The default-domain opset the file really declares (what a runtime checks)."""
    import onnx

    return next(o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                if o.domain in ("", "ai.onnx"))


def _missing_tokenizer(name: str) -> str | None:
    """A local folder without tokenizer files exports fine but cannot be served as it is: say so."""
    folder = Path(name)
    if not folder.is_dir() or any((folder / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        return None
    from ..model.adapters import is_adapter_task

    if is_adapter_task(folder):
        return None  # the adapter task folder's base holds the tokenizer
    message = (f"{folder} has no tokenizer files: the ONNX graph takes token ids, so serving it needs the "
               "tokenizer the model was trained with (save it beside the model with tokenizer.save_pretrained).")
    logging.getLogger(__name__).warning(message)
    return message


def _require_onnx_packages() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise MiniAlbertError(f"ONNX export needs {', '.join(missing)}: pip install 'minialbert[onnx]'.")


def _strip_debug_metadata(path) -> None:
    """The exporter annotates every node with Python stack traces and module paths (for debugging
    the export); a deployment file does not need them (they can outweigh a small model's weights)."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.save(model, str(path))


def quantize_int8(src, dst) -> None:
    """Dynamic quantisation: int8 weights for MatMul/Gemm, activations quantised on the fly. The
    pre-processing pass folds the shared layer's weight transposes into constants first: without it
    the quantiser sees a Transpose output, not a weight, and leaves the shared layer in fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    folded = dst.with_name(dst.stem + ".pre.onnx")
    try:
        with _quiet_export():
            quant_pre_process(str(src), str(folded), skip_symbolic_shape=True)
            quantize_dynamic(str(folded), str(dst), weight_type=QuantType.QInt8)
    finally:
        folded.unlink(missing_ok=True)



def export_release(model: str, out, name: str, command: str, measured: dict | None = None) -> dict:
    """A student folder to publish: the base encoder only (no MLM head), its weights in fp16
    safetensors (half the bytes; config.json says float32, so it loads and computes in fp32), the
    tokenizer, the modeling code beside them (loads without this package, `trust_remote_code=True`),
    distillation.json and a model card with `command`, the exact command that made it, and the
    `measured` figures (e.g. the zero-shot STS-B score)."""
    import json
    import shutil

    import torch
    from transformers import AutoTokenizer

    from ..checkpoints import resolve_model_name
    from ..hf_utils import quiet_transformers
    from ..model import MiniAlbertModel
    from ..model_card import public_corpus, student_kind, student_tags, write_model_card
    from ..records import read_json
    from .embeddings import add_sentence_transformers_files

    source = Path(resolve_model_name(model))
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MiniAlbertError(f"--release {out} exists and is not empty; give a new folder.")
    # The folder's own config.json says what it is (the loaded config's model_type is a class
    # attribute: MiniAlbertModel.from_pretrained would read any BERT folder as a MiniALBERT).
    found = read_json(source / "config.json", {"model_type": str},
                      "--release needs a student folder written by `minialbert distill`.")["model_type"]
    if found != "minialbert":
        raise MiniAlbertError(f"--release needs a MiniALBERT student; {model!r} is a {found!r} model. Distil a "
                              "student from it with `minialbert distill --teacher ...` and release that.")
    with quiet_transformers():  # a masked-LM checkpoint's head is left out on purpose
        encoder = MiniAlbertModel.from_pretrained(source, dtype=torch.float32).eval()
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    encoder.half().save_pretrained(staging)
    config = json.loads((staging / "config.json").read_text())
    config["dtype"] = "float32"  # compute in fp32: the fp16 weights are only how the file stores them
    (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    AutoTokenizer.from_pretrained(source).save_pretrained(staging)
    sentence_files = add_sentence_transformers_files(staging)  # SentenceTransformer(folder) works as it is
    info = {}
    if (source / "distillation.json").is_file():
        shutil.copyfile(source / "distillation.json", staging / "distillation.json")
        info = json.loads((source / "distillation.json").read_text())
    c = encoder.config
    parameters = sum(p.numel() for p in encoder.parameters())
    figures = "".join(f"\n- {k}: {v}" for k, v in (measured or {}).items())
    kind, layers = student_kind(c)
    how = (f"`{name}`: a {kind} ({layers}, hidden {c.hidden_size}, embedding {c.embedding_size}, "
           f"adapters {'yes' if c.use_adapters else 'no'}; "
           f"{parameters:,} parameters), distilled layer to layer from `{info.get('teacher', '?')}` on "
           f"`{public_corpus(info.get('corpus'))}`: {info.get('steps', '?')} steps, {info.get('distilled_tokens') or 0:,} tokens, "
           f"{info.get('train_seconds_total', '?')} s on {info.get('machine', {}).get('cpu', '?')}, seed "
           f"{info.get('seed', '?')}. Made with:\n\n```bash\n{command.strip()}\n```\n\nMeasured:{figures or ' -'}\n\n"
           "**What it is for**: sentence embeddings (mean-pooled final states; semantic similarity, search, "
           "clustering) and fine-tuning for classification and tagging (`minialbert finetune --model "
           f"{name}`). **What it is not**: a masked language model. It ships no MLM head (its teacher, "
           "all-MiniLM-L6-v2, has none), so `pipeline(\"fill-mask\")` or `AutoModelForMaskedLM` would build a "
           "randomly initialised head and answer with random words; do not use it for fill-mask.\n\n"
           "Sentence embeddings, directly: `SentenceTransformer(folder)` after `import minialbert`, or "
           "`SentenceTransformer(folder, trust_remote_code=True)` where minialbert is not installed "
           "(mean pooling). The encoder: `AutoModel.from_pretrained(folder)` after "
           f"`import minialbert` (or by name, `--model {name}` in every minialbert command), or "
           "`AutoModel.from_pretrained(folder, trust_remote_code=True)`.")
    write_model_card(staging, title=name, base_model=info.get("teacher"), library_name="sentence-transformers",
                     tags=["distillation", *student_tags(c), "sentence-transformers", "sentence-similarity"],
                     pipeline_tag="sentence-similarity", how=how)
    replace_dir(staging, out)  # the (empty) folder given stays until the release is in
    weights = out / "model.safetensors"
    return {"model": model, "out": str(out), "name": name, "parameters": parameters,
            "weights_bytes": weights.stat().st_size, "sentence_transformers_files": sentence_files}


def model_code_files() -> dict[str, bytes]:
    """The modeling code that `save_pretrained` copies beside a student's weights (transformers'
    custom-code convention), as this installed minialbert has it: file name -> bytes."""
    from ..model import configuration_minialbert, modeling_minialbert

    return {Path(m.__file__).name: Path(m.__file__).read_bytes()
            for m in (configuration_minialbert, modeling_minialbert)}


def update_model_code(model: str) -> dict:
    """Rewrite the modeling code beside a saved student's weights from this package (and nothing
    else), so the copy that `trust_remote_code` runs is the model code of this commit. `make
    release-code` runs it on every released student; a test compares the copies byte for byte."""
    from ..checkpoints import resolve_model_name

    folder = Path(resolve_model_name(model))
    if not (folder / "config.json").is_file() or not (folder / "modeling_minialbert.py").is_file():
        raise MiniAlbertError(f"--update-code: {folder} is not a saved MiniALBERT folder with modeling code beside "
                              "its weights (config.json and modeling_minialbert.py).")
    changed = []
    for name, code in model_code_files().items():
        target = folder / name
        if not target.is_file() or target.read_bytes() != code:
            write_bytes(target, code)
            changed.append(name)
    return {"model": str(folder), "updated": changed}
