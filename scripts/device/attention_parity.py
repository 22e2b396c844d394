"""Attention kernels against eager on a padded batch, on whatever device is here (a lent GPU):
sdpa, flex attention and flash attention (when its package is installed), for the released
student (real weights) and for random plain and relaxed students, in fp32 and bf16; plus
sentences/s of each kernel. Prints one JSON object. `_supports_flash_attn` is declared only after
this shows flash attention matching eager here. tests/test_conventions.py runs `parity` on the CPU
(fp32, no timing): every kernel the class declares must match eager there too.

    python scripts/device/attention_parity.py [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import minialbert
from minialbert import MiniAlbertConfig, MiniAlbertModel
from minialbert.records import write_json

RELEASED = Path(minialbert.__file__).parent / "released" / "minialbert-minilm"
TEXTS = ["A man is playing a guitar.", "The cat sleeps on the warm windowsill while rain falls outside.",
         "Distillation keeps most of the teacher.", "Short.",
         "Patients with chronic kidney disease were randomised to two doses of the drug over twelve weeks."] * 13


IMPLS = ("sdpa", "flex_attention", "flash_attention_2")
SHAPES = {"released": None, "plain-3": dict(num_hidden_groups=3, use_adapters=False),
          "relaxed-r32": dict(relaxation_rank=32)}


def compare(model, enc, device, dtype, impls, timing: bool = True):
    """Max abs difference of each kernel's last hidden state from eager's, on real tokens and on all;
    with `timing`, sentences/s of each."""
    real = enc["attention_mask"].bool()
    out, speed = {}, {}
    model = model.to(device, dtype).eval()
    declared = type(model)._supports_flash_attn
    try:
        with torch.no_grad():
            for impl in ["eager", *impls]:
                try:
                    # flash attention is not declared until this script shows it matching; let the attempt
                    # reach the kernel (or the missing package) rather than stop at the declaration
                    type(model)._supports_flash_attn = impl == "flash_attention_2"
                    model.set_attn_implementation(impl)
                    h = model(**enc).last_hidden_state.float()
                    if timing:
                        speed[impl] = _sentences_per_s(model, enc, device)
                except Exception as e:  # a kernel that is not installed here: reported, not fatal
                    out[impl] = f"unavailable: {type(e).__name__}: {str(e)[:200]}"
                    continue
                if impl == "eager":
                    ref = h
                    continue
                out[impl] = {"max_abs_diff_real_tokens": (h - ref)[real].abs().max().item(),
                             "max_abs_diff_all": (h - ref).abs().max().item()}
    finally:
        type(model)._supports_flash_attn = declared  # the class declares what it declared before
    return {"vs_eager": out, "sentences_per_s": speed} if timing else {"vs_eager": out}


def _sentences_per_s(model, enc, device) -> int:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        model(**enc)
    if device == "cuda":
        torch.cuda.synchronize()
    return round(10 * len(enc["input_ids"]) / (time.perf_counter() - start))


def parity(device: str, dtypes=(torch.float32, torch.bfloat16), texts=TEXTS, shapes=SHAPES, timing: bool = True,
           log=None) -> dict:
    """Every kernel of IMPLS against eager for each shape and dtype on `device` (one JSON-able dict)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(RELEASED)
    enc = {k: v.to(device) for k, v in tok(list(texts), padding=True, return_tensors="pt").items()}
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
              "transformers": __import__("transformers").__version__, "batch": list(enc["input_ids"].shape),
              "padding_fraction": round(1 - enc["attention_mask"].float().mean().item(), 3)}
    base = MiniAlbertModel.from_pretrained(RELEASED).config.to_dict()
    for name, overrides in shapes.items():
        for dtype in dtypes:
            torch.manual_seed(0)
            model = (MiniAlbertModel.from_pretrained(RELEASED) if overrides is None
                     else MiniAlbertModel(MiniAlbertConfig(**{**base, **overrides})))
            key = f"{name}-{str(dtype).split('.')[-1]}"
            result[key] = compare(model, enc, device, dtype, IMPLS, timing)
            if log:
                log(json.dumps({name: result[key]}))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = parity(device, log=lambda line: print(line, flush=True))
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
