"""Biomedical NER in BioBERT's format (token<TAB>tag, blank line between sentences): loading,
word-to-sub-token alignment, splitting long sentences (never silent truncation), and
entity-level seqeval scores at the word level."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import MiniAlbertError

NER_SPLITS = {"train": "train.tsv", "devel": "devel.tsv", "test": "test.tsv"}


@dataclass
class NerSplit:
    sentences: list[list[str]]
    tags: list[list[str]]
    file: str


def read_bio(path: Path, allowed_tags: set[str] | None = None) -> NerSplit:
    if not path.is_file():
        raise MiniAlbertError(f"Missing split file {path}; an NER folder needs train.tsv, devel.tsv and test.tsv "
                              "(token<TAB>tag per line, blank line between sentences).")
    sentences, tags, words, labels, columns = [], [], [], [], None
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                if words:
                    sentences.append(words)
                    tags.append(labels)
                    words, labels = [], []
                continue
            parts = line.split("\t")
            if len(parts) < 2 or not parts[-1]:
                raise MiniAlbertError(f"{path}, line {n}: expected 'token<TAB>tag', got {line!r}.")
            columns = columns or len(parts)  # the first line fixes the layout (token ... tag)
            if len(parts) != columns:
                raise MiniAlbertError(f"{path}, line {n}: {len(parts)} tab-separated fields where the file's first "
                                      f"line has {columns}; got {line!r}. Each line is token<TAB>tag (the tag last).")
            tag = parts[-1].strip()
            if not (tag == "O" or tag[:2] in ("B-", "I-")):
                raise MiniAlbertError(f"{path}, line {n}: tag {tag!r} is not BIO (O, B-X or I-X).")
            if allowed_tags is not None and tag not in allowed_tags:
                raise MiniAlbertError(f"{path}, line {n}: tag {tag!r} does not occur in the training file, so the "
                                      f"model cannot predict it (train tags: {sorted(allowed_tags)}).")
            words.append(parts[0])
            labels.append(tag)
    if words:
        sentences.append(words)
        tags.append(labels)
    if not sentences:
        raise MiniAlbertError(f"{path} holds no sentences.")
    return NerSplit(sentences, tags, str(path))


def load_ner(data_dir: str) -> tuple[dict[str, NerSplit], list[str]]:
    folder = Path(data_dir)
    train = read_bio(folder / NER_SPLITS["train"])
    label_list = sorted({t for s in train.tags for t in s}, key=lambda t: (t != "O", t[2:], t[:2]))
    splits = {"train": train}
    for name in ("devel", "test"):
        splits[name] = read_bio(folder / NER_SPLITS[name], set(label_list))
    return splits, label_list


def encode_ner(split: NerSplit, tokenizer, label_list: list[str], max_length: int = 128, label_all: bool = False):
    """Features for the Trainer, and for each feature (sentence index, [(token position, word index)]
    of every word's first sub-token). Sentences whose sub-tokens exceed max_length are split at word
    boundaries into several features; a word longer than the whole budget keeps its first pieces."""
    label_id = {t: i for i, t in enumerate(label_list)}
    budget = max_length - 2  # [CLS] ... [SEP]
    vocab = sorted({w for s in split.sentences for w in s})
    # one batched call of the fast tokenizer for every distinct word, instead of one call per word
    word_ids = dict(zip(vocab, tokenizer(vocab, add_special_tokens=False)["input_ids"]))
    features, maps = [], []
    for s_idx, (words, tags) in enumerate(zip(split.sentences, split.tags)):
        pieces = [(word_ids[w] or [tokenizer.unk_token_id])[:budget] for w in words]
        start = 0
        while start < len(words):
            end, used = start, 0
            while end < len(words) and used + len(pieces[end]) <= budget:
                used += len(pieces[end])
                end += 1
            ids, labels, firsts = [tokenizer.cls_token_id], [-100], []
            for w in range(start, end):
                firsts.append((len(ids), w))
                first = label_id[tags[w]]
                rest = label_id.get("I-" + tags[w][2:], first) if tags[w] != "O" else first
                ids += pieces[w]
                labels += [first] + [rest if label_all else -100] * (len(pieces[w]) - 1)
            ids.append(tokenizer.sep_token_id)
            labels.append(-100)
            features.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
            maps.append((s_idx, firsts))
            start = end
    return features, maps


def word_level_predictions(maps, logits_per_feature, split: NerSplit, label_list):
    """One tag per word: the arg-max at the word's first sub-token, stitched back per sentence."""
    preds = [["O"] * len(s) for s in split.sentences]
    for (s_idx, firsts), logits in zip(maps, logits_per_feature):
        for pos, w in firsts:
            preds[s_idx][w] = label_list[int(logits[pos].argmax())]
    return preds


def ner_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {"precision": float(precision_score(gold, pred)), "recall": float(recall_score(gold, pred)),
            "f1": float(f1_score(gold, pred)), "score": float(f1_score(gold, pred))}
