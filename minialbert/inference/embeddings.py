"""Sentence embeddings: zero-shot STS-B scoring (`minialbert bench embed`) and the
sentence-transformers export (`minialbert export MODEL --sentence-transformers OUT`).

Zero-shot STS-B: each dev sentence encoded alone, pooled (mean over real tokens by default, as the
MiniLM teacher was trained), cosine similarity per pair, Spearman and Pearson against the gold
scores. No training, so no seed noise: a cheap measure of what general distillation transferred.
The same score from the embedding layer alone (states before the first layer) is the lexical
baseline that any transformer must beat.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import resolve_model_name
from ..errors import MiniAlbertError
from ..hf_utils import quiet_transformers
from ..model.modeling_bi_encoder import is_bi_encoder, load_bi_encoder
from ..model.pooling import POOLINGS, pool
from .options import BenchEmbedOptions  # noqa: F401  (options apart: the CLI reads them without torch)


def load_encoder(name: str):
    """(encoder, tokenizer) for a MiniALBERT student, a saved bi-encoder (its encoder), 'minilm' or
    any Hugging Face encoder."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_name(name)
    try:
        with quiet_transformers():  # a masked-LM checkpoint's head is expected to be unused
            encoder = load_bi_encoder(path).encoder if is_bi_encoder(path) else AutoModel.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"Could not load the encoder {name!r}: {e}") from None
    return encoder.eval(), tokenizer


@torch.inference_mode()
def embed(encoder, tokenizer, sentences: list[str], pooling: str = "mean", batch_size: int = 64,
          max_length: int = 128, num_iterations: int | None = None, layer: int | None = None) -> np.ndarray:
    """(n, H) pooled embeddings, batches of similar lengths (little padding), in input order.
    `layer=0`: the embedding layer's output instead of the final states."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out = [None] * len(sentences)
    extra = {"num_iterations": num_iterations} if num_iterations else {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([sentences[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(encoder.device)  # the encoder's device (a GPU during distillation)
        res = encoder(**enc, output_hidden_states=layer is not None, **extra)
        states = res.hidden_states[layer] if layer is not None else res.last_hidden_state
        for i, row in zip(idx, pool(states.float(), enc["attention_mask"], pooling).cpu()):
            out[i] = row.numpy()
    return np.stack(out)


def _cosines(emb: np.ndarray, index: dict, pairs) -> np.ndarray:
    u = emb[[index[a] for a, _ in pairs]]
    v = emb[[index[b] for _, b in pairs]]
    return (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1) + 1e-12)


def stsb_pairs(data_dir: str, split: str = "dev"):
    from ..data.glue import get_task, load_glue

    pairs = load_glue(get_task("stsb"), data_dir)[split]
    return pairs.texts, np.asarray(pairs.labels, dtype=float)


class ZeroShotSTSB:
    """The STS-B pairs of `data_dir` (dev, or train: a split to choose a model on without touching
    dev), read once, and the zero-shot score of an encoder on them: each distinct sentence encoded
    once, cosine per pair, Spearman/Pearson x 100 against the gold scores. Used by `bench embed` and,
    during distillation, by the zero-shot curve."""

    def __init__(self, data_dir: str, split: str = "dev", max_pairs: int | None = None):
        if split not in ("dev", "train"):
            raise MiniAlbertError(f"--split must be dev or train (got {split!r}).")
        if max_pairs is not None and max_pairs < 2:
            raise MiniAlbertError(f"--max-pairs must be 2 or more (got {max_pairs}); leave it out to score every pair.")
        self.pairs, self.gold = stsb_pairs(data_dir, split)
        if max_pairs is not None and max_pairs < len(self.pairs):
            # Evenly spaced, not the first N: STS-B's files are grouped by genre (news, captions, forums),
            # so a prefix would score one genre only.
            keep = np.unique(np.linspace(0, len(self.pairs) - 1, max_pairs).round().astype(int))
            self.pairs, self.gold = [self.pairs[i] for i in keep], self.gold[keep]
        self.sentences = sorted({s for pair in self.pairs for s in pair})
        self.index = {s: i for i, s in enumerate(self.sentences)}

    def score(self, encoder, tokenizer, pooling: str = "mean", batch_size: int = 64, max_length: int = 128,
              **embed_kwargs) -> dict:
        from scipy.stats import pearsonr, spearmanr

        cos = _cosines(embed(encoder, tokenizer, self.sentences, pooling, batch_size, max_length, **embed_kwargs),
                       self.index, self.pairs)
        return {"spearman": round(100 * float(spearmanr(cos, self.gold)[0]), 2),
                "pearson": round(100 * float(pearsonr(cos, self.gold)[0]), 2)}


def bench_embed(model: str, data_dir: str, pooling: str = "mean", batch_size: int = 64, max_length: int = 128,
                depths: bool = False, compare: list[str] = (), split: str = "dev", device: str = "cpu",
                max_pairs: int | None = None) -> dict:
    """Zero-shot STS-B dev scores of `model`'s pooled embeddings (x 100), the embedding-layer
    baseline, and sentences per second; with `depths` (MiniALBERT) the same after each K
    iterations; with `compare`, the same for other encoders in this run and the ratios to them."""
    if pooling not in POOLINGS:
        raise MiniAlbertError(f"--pooling must be one of {', '.join(POOLINGS)} (got {pooling!r}).")
    from ..runtime import resolve_device

    stsb = ZeroShotSTSB(data_dir, split, max_pairs)
    for other in compare:  # a name that cannot be resolved (e.g. 'mpnet' not installed) stops the run before any work
        if not other.startswith("model2vec:"):
            resolve_model_name(other)
    encoder, tokenizer = load_encoder(model)
    encoder = encoder.to(resolve_device(device))
    N = getattr(encoder.config, "num_hidden_layers", None)
    minialbert = getattr(encoder.config, "model_type", None) == "minialbert"
    if depths and not minialbert:
        raise MiniAlbertError(f"--depths needs a MiniALBERT model (one shared layer, any depth); {model!r} is "
                              f"{encoder.config.model_type!r}.")

    def score(**kw) -> dict:
        embed(encoder, tokenizer, stsb.sentences[:batch_size], pooling, batch_size, max_length, **kw)  # warm-up
        start = time.perf_counter()
        scores = stsb.score(encoder, tokenizer, pooling, batch_size, max_length, **kw)
        seconds = time.perf_counter() - start
        return {**scores, "sentences_per_s": round(len(stsb.sentences) / seconds, 1)}

    result = {"model": model, "pooling": pooling, "split": split, **score()}
    result.update({"embedding_layer_spearman": stsb.score(encoder, tokenizer, pooling, batch_size, max_length,
                                                          layer=0)["spearman"],
                   "sentences": len(stsb.sentences), "pairs": len(stsb.pairs),
                   "parameters": sum(p.numel() for p in encoder.parameters()),
                   "iterations": N, "threads": torch.get_num_threads(), "device": str(encoder.device)})
    if depths:
        result["depths"] = {str(k): score(num_iterations=k) for k in range(1, N + 1)}
    if compare:
        result["compare"] = {}
        for other in compare:
            row = (bench_static(other, stsb) if other.startswith("model2vec:")
                   else bench_embed(other, data_dir, pooling, batch_size, max_length, split=split, device=device,
                                 max_pairs=max_pairs))
            row.update({"spearman_retention": round(result["spearman"] / row["spearman"], 4),
                        "speedup": round(result["sentences_per_s"] / row["sentences_per_s"], 2),
                        "parameter_ratio": round(result["parameters"] / row["parameters"], 4)})
            result["compare"][other] = row
    return result


def embed_figures(result: dict) -> dict:
    """A `bench embed` result as a model card's measured figures: the zero-shot score, its speed and
    parameters, and each model compared in the same run."""
    figures = {"zero-shot STS-B dev Spearman (mean pooling, x 100)": result["spearman"],
               "Pearson": result["pearson"], "sentences/s": f"{result['sentences_per_s']:,.0f} ({result['threads']} threads)",
               "parameters": f"{result['parameters']:,}"}
    for name, row in result.get("compare", {}).items():
        figures[f"against {name}, same run"] = (f"{row['spearman']:.2f} Spearman, {row['sentences_per_s']:,.0f} "
                                                f"sentences/s, {row['parameters']:,} parameters; this model keeps "
                                                f"{row['spearman_retention']:.3f} of its score at {row['speedup']:.2f}x "
                                                f"its speed")
    return figures


def static_model(spec: str):
    """`model2vec:TEACHER:DIMS` (a static model distilled now from TEACHER, PCA to DIMS; e.g.
    model2vec:minilm:256) or `model2vec:FOLDER` (a saved one): (StaticModel, seconds to distil)."""
    from model2vec import StaticModel

    from ..checkpoints import resolve_model_name

    name = spec.removeprefix("model2vec:")
    teacher, _, dims = name.rpartition(":")
    if teacher and dims.isdigit():
        from model2vec.distill import distill

        start = time.perf_counter()
        model = distill(model_name=resolve_model_name(teacher), pca_dims=int(dims))
        return model, round(time.perf_counter() - start, 1)
    try:
        return StaticModel.from_pretrained(name), None
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"--compare {spec}: give model2vec:TEACHER:DIMS (distilled in the run) or "
                              f"model2vec:FOLDER (a saved model2vec model): {e}") from None


def bench_static(spec: str, stsb: ZeroShotSTSB) -> dict:
    """The zero-shot score and speed of a static (model2vec) embedding model, as bench_embed's rows."""
    from scipy.stats import pearsonr, spearmanr

    model, distill_seconds = static_model(spec)
    model.encode(stsb.sentences[:64])  # warm-up
    start = time.perf_counter()
    emb = model.encode(stsb.sentences)
    seconds = time.perf_counter() - start
    cos = _cosines(np.asarray(emb, dtype=np.float32), stsb.index, stsb.pairs)
    return {"model": spec, "spearman": round(100 * float(spearmanr(cos, stsb.gold)[0]), 2),
            "pearson": round(100 * float(pearsonr(cos, stsb.gold)[0]), 2),
            "sentences_per_s": round(len(stsb.sentences) / seconds, 1),
            "parameters": int(np.prod(model.embedding.shape)), "dimension": int(model.embedding.shape[1]),
            "distill_seconds": distill_seconds}


def add_sentence_transformers_files(folder, pooling: str = "mean", max_length: int = 128) -> list[str]:
    """Make a saved encoder folder load directly as `SentenceTransformer(folder)` (after `import
    minialbert`, or with trust_remote_code=True where minialbert is absent): sentence-transformers'
    own configuration files (modules.json, sentence_bert_config.json, the pooling module's folder),
    written by its own classes; the weights and tokenizer files stay as they are. Returns the
    files added."""
    import shutil
    import tempfile

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    folder = Path(folder)
    with quiet_transformers():
        transformer = Transformer(str(folder), max_seq_length=max_length)
    pooler = Pooling(transformer.get_embedding_dimension(), pooling_mode="cls" if pooling == "cls" else "mean")
    added = []
    with tempfile.TemporaryDirectory() as tmp:
        SentenceTransformer(modules=[transformer, pooler], device="cpu").save(tmp)
        for path in sorted(Path(tmp).rglob("*")):
            rel = path.relative_to(tmp)
            if path.is_file() and not (folder / rel).exists() and rel.name != "README.md":  # encoder files kept
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, folder / rel)
                added.append(rel.as_posix())
    return added


def export_sentence_transformers(model: str, out, pooling: str = "mean", max_length: int = 128) -> dict:
    """A folder that `sentence_transformers.SentenceTransformer(out)` loads (after `import
    minialbert` for MiniALBERT encoders) and that embeds as `bench embed` scores: the encoder,
    its tokenizer and a pooling module, built and saved with sentence-transformers' own classes."""
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        raise MiniAlbertError("--sentence-transformers needs the sentence-transformers package: "
                              "pip install sentence-transformers") from None
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MiniAlbertError(f"--sentence-transformers {out} exists and is not empty; give a new folder.")
    if pooling not in POOLINGS:
        raise MiniAlbertError(f"--pooling must be one of {', '.join(POOLINGS)} (got {pooling!r}).")
    encoder, tokenizer = load_encoder(model)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # the bare encoder (a bi-encoder's or a masked LM's base)
        encoder.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        with quiet_transformers():
            transformer = Transformer(tmp, max_seq_length=max_length)
        pooler = Pooling(encoder.config.hidden_size, pooling_mode="cls" if pooling == "cls" else "mean")
        st = SentenceTransformer(modules=[transformer, pooler], device="cpu")
        staging = out.with_name(out.name + ".tmp")
        st.save(str(staging))
    from ..model_card import write_model_card

    how = (f"Exported by `minialbert export {model} --sentence-transformers` ({pooling} pooling, at most "
           f"{max_length} tokens). Load it after `import minialbert` with `SentenceTransformer(folder)`; "
           "`minialbert bench embed` scores the same embeddings on STS-B.")
    write_model_card(staging, title="MiniALBERT sentence embeddings", base_model=model,
                     library_name="sentence-transformers", tags=["sentence-transformers"],
                     pipeline_tag="sentence-similarity", how=how)
    staging.replace(out)  # appears whole or not at all
    return {"model": model, "out": str(out), "pooling": pooling, "max_seq_length": max_length,
            "dimension": encoder.config.hidden_size}
