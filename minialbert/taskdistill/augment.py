"""TinyBERT-style augmentation for task distillation (docs/method.md section 7): each whole word
that is one vocabulary entry may be replaced (probability p) by one of the top-k predictions of a
masked LM at its position; N copies per example, deterministic for a seed. Candidates come from
one forward pass per group of words masked together (about one word in seven, close to the 15%
masking the LM was trained with) instead of TinyBERT's one pass per word. Words of several pieces,
numbers and punctuation stay."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..distillation.teacher import mlm_head_module, missing_head_keys
from ..errors import MiniAlbertError
from ..fingerprint import options_hash
from ..records import CHUNK_BATCHES, resumable_chunks


def _whole_word_ids(tokenizer) -> np.ndarray:
    """Vocabulary ids that are a whole alphabetic word (no '##' piece, no [unused]/special entry)."""
    ok = np.zeros(len(tokenizer), dtype=bool)
    for token, i in tokenizer.get_vocab().items():
        if i < len(ok) and token.isalpha() and token.isascii() and i not in tokenizer.all_special_ids:
            ok[i] = True
    return ok


def replacement_candidates(sentences: list[list[str]], mlm, tokenizer, top_k: int = 15, max_length: int = 128,
                           batch_size: int = 64, groups: int = 7, device="cpu", desc="augment: candidates",
                           keep_original: bool = False, cache: Path | None = None):
    """For each sentence (a list of words), {word index: [candidate words]} from the masked LM
    (`keep_original`: the original word may be among them: how an LM's proposals are scored).
    `cache`: a folder for this masked LM only, where the candidates are kept chunk by chunk as they
    are computed, so that a cut run (hours on SST-2) resumes where it stopped."""
    from tqdm.auto import tqdm

    vocab = tokenizer.get_vocab()
    whole = torch.from_numpy(_whole_word_ids(tokenizer))
    distinct = sorted({w for words in sentences for w in words})
    # one batched call of the fast tokenizer for every distinct word
    word_ids = dict(zip(distinct, tokenizer(distinct, add_special_tokens=False)["input_ids"])) if distinct else {}
    requests = []  # (sentence index, input ids, [(position, word index, original id)])
    for s, words in enumerate(sentences):
        ids, eligible = [tokenizer.cls_token_id], []
        for w, word in enumerate(words):
            pieces = word_ids[word] or [tokenizer.unk_token_id]
            if len(ids) + len(pieces) >= max_length:
                break
            if len(pieces) == 1 and word.isalpha() and whole[pieces[0]] and vocab.get(word.lower()) == pieces[0]:
                eligible.append((len(ids), w, pieces[0]))
            ids += pieces
        ids.append(tokenizer.sep_token_id)
        for g in range(groups):  # masked together: every `groups`-th eligible word
            chosen = eligible[g::groups]
            if chosen:
                requests.append((s, ids, chosen))
    mlm.to(device).eval()
    head = mlm_head_module(mlm)  # load_mlm checked there is one

    @torch.inference_mode()
    def propose(start: int, end: int) -> list:  # [sentence, word index, candidates] per masked word
        found = []
        for first in range(start, end, batch_size):
            part = requests[first:min(first + batch_size, end)]
            T = max(len(ids) for _, ids, _ in part)
            input_ids = torch.full((len(part), T), tokenizer.pad_token_id)
            mask = torch.zeros(len(part), T, dtype=torch.long)
            for r, (_, ids, chosen) in enumerate(part):
                input_ids[r, :len(ids)] = torch.tensor(ids)
                mask[r, :len(ids)] = 1
                for pos, _, _ in chosen:
                    input_ids[r, pos] = tokenizer.mask_token_id
            states = mlm.base_model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            where = input_ids == tokenizer.mask_token_id  # vocabulary logits only where a word is masked
            scores = head(states[where.to(device)]).float().cpu().masked_fill(~whole, -math.inf)
            k = 0
            for s, _, chosen in part:
                for pos, w, original in chosen:  # row-major order: the same order as `where`
                    if not keep_original:
                        scores[k, original] = -math.inf
                    found.append([s, w, tokenizer.convert_ids_to_tokens(scores[k].topk(top_k).indices.tolist())])
                    k += 1
            bar.update(len(part))
        return found

    # Chunks of whole batches: the batches are those of one uninterrupted pass, resumed or not.
    key = options_hash({"sentences": sentences, "top_k": top_k, "max_length": max_length, "batch_size": batch_size,
                        "groups": groups, "keep_original": keep_original})
    out = [dict() for _ in sentences]
    with tqdm(total=len(requests), desc=desc, unit="request") as bar:
        for s, w, words in resumable_chunks(len(requests), batch_size * CHUNK_BATCHES, propose, cache, key, bar):
            out[s][w] = words
    return out


def replace_words(words: list[str], candidates: dict, probability: float, rng: np.random.Generator) -> list[str]:
    """One augmented copy: each word with candidates is replaced with `probability` by a uniformly
    drawn candidate. Every draw happens for every eligible word, so the stream stays aligned."""
    new = list(words)
    for w in sorted(candidates):
        replace, pick = rng.random() < probability, int(rng.integers(len(candidates[w])))
        if replace:
            new[w] = candidates[w][pick]
    return new


def augment(examples: list[tuple[list[str], ...]], copies: int, mlm, tokenizer, probability: float = 0.4,
            seed: int = 42, **candidate_kwargs) -> list[tuple[tuple[list[str], ...], int]]:
    """`copies` augmented versions of every example (a tuple of word lists: one per sentence), as
    (new example, index of its source example). Deterministic for (`seed`, example, copy)."""
    distinct = sorted({tuple(s) for ex in examples for s in ex})
    index = {s: i for i, s in enumerate(distinct)}
    cands = replacement_candidates([list(s) for s in distinct], mlm, tokenizer, **candidate_kwargs)
    out = []
    for i, ex in enumerate(examples):
        for c in range(copies):
            rng = np.random.default_rng([seed, i, c])
            out.append((tuple(replace_words(s, cands[index[tuple(s)]], probability, rng) for s in ex), i))
    return out


def load_mlm(path: str, name: str):
    """The masked LM that proposes replacements: a distilled student, a `fit-head` teacher, any
    Hugging Face masked LM. A checkpoint without a trained MLM head is refused."""
    from transformers import AutoModelForMaskedLM

    from ..hf_utils import quiet_transformers

    try:
        with quiet_transformers():
            model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"--augment-mlm {name}: could not load a masked LM ({e}).") from None
    missing = missing_head_keys(model, info)
    if missing:
        raise MiniAlbertError(f"--augment-mlm {name} has no trained MLM head (missing {missing[:2]}); give a "
                              "distilled student, a `minialbert fit-head` output, or another masked LM.")
    if mlm_head_module(model) is None:
        raise MiniAlbertError(f"--augment-mlm {name} ({type(model).__name__}) splits its MLM head over several "
                              "modules; give a BERT-style masked LM.")
    return model.eval()


def proposal_recall(sentences: list[list[str]], mlm, tokenizer, top_k: int = 15, **kwargs) -> dict:
    """How well a masked LM serves as the augmenter: over every eligible word, how often the
    original word is its first proposal and how often it is among the top `top_k` (masked in the
    same groups as `augment`). Plausible proposals are what word replacement needs."""
    cands = replacement_candidates(sentences, mlm, tokenizer, top_k, keep_original=True, **kwargs)
    hits1 = hitsk = n = 0
    for words, c in zip(sentences, cands):
        for w, proposals in c.items():
            n += 1
            hits1 += proposals[0] == words[w].lower()
            hitsk += words[w].lower() in proposals
    return {"words": n, "top1": hits1 / max(n, 1), f"top{top_k}": hitsk / max(n, 1)}
