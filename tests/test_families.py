"""Teachers of every family in minialbert/model/families.py: a tiny random teacher of each, built from
its config with a small tokenizer of its own kind (WordPiece, byte-level BPE or Unigram, trained here
with `tokenizers`, so pad ids and <s>/</s> tokens are really exercised; nothing downloaded), distils
two steps with the default recipe, and loads back; a plain student holding all of a teacher's layers
reproduces it; layer choices relative to the teacher ('last', fractions) resolve before a run is stored."""

import json
import logging
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerFast)

import minialbert  # noqa: F401
from minialbert.cli import main
from minialbert.distillation.recipe import DistillRecipe, load_recipe, resolve_layer_choices
from minialbert.distillation.student import build_student, student_config
from minialbert.distillation.teacher import load_teacher
from minialbert.errors import MiniAlbertError
from minialbert.model.initialization import parse_shared_layer_init

WORDS = ("the a of protein cell gene binds to in human mouse cancer tumour receptor signal pathway expression "
         "drug dose patient study shows that this which river city music game film player season").split()


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    torch.set_num_threads(1)


def _texts(n=120):
    g = torch.Generator().manual_seed(0)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(4 + k % 9),), generator=g))
            for k in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    path.write_text("\n".join(_texts()) + "\n")
    return path


# tokenizers of three kinds; `specials` in id order (the ids the family's config names)
def _wordpiece(specials):
    vocab = {t: i for i, t in enumerate(specials)}
    for piece in sorted(set(WORDS) | set("abcdefghijklmnopqrstuvwxyz")) + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tok, dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids: <s> 0, <pad> 1, </s> 2
ROBERTA_TOKENS = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", unk_token="<unk>",
                      pad_token="<pad>", mask_token="<mask>")


def _bpe(specials):
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_texts(), trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return tok, ROBERTA_TOKENS


def _unigram(specials, template, tokens):
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(_texts(), trainers.UnigramTrainer(vocab_size=120, special_tokens=specials,
                                                              unk_token=specials[3]))
    first, last = template
    tok.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}", pair=f"{first} $A {last} $B:1 {last}:1",
        special_tokens=[(first, tok.token_to_id(first)), (last, tok.token_to_id(last))])
    return tok, tokens


SMALL = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)

# family -> (config builder(vocab, tokenizer ids), tokenizer builder)
FAMILIES = {
    "bert": (lambda V, ids: dict(model_type="bert", vocab_size=V, max_position_embeddings=64, **SMALL, **ids),
             lambda: _wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])),
    "roberta": (lambda V, ids: dict(model_type="roberta", vocab_size=V, max_position_embeddings=66, type_vocab_size=1,
                                    **SMALL, **ids), lambda: _bpe(ROBERTA_SPECIALS)),
    "xlm-roberta": (lambda V, ids: dict(model_type="xlm-roberta", vocab_size=V, max_position_embeddings=66,
                                        type_vocab_size=1, **SMALL, **ids),
                    lambda: _unigram(ROBERTA_SPECIALS, ("<s>", "</s>"), ROBERTA_TOKENS)),
    "mpnet": (lambda V, ids: dict(model_type="mpnet", vocab_size=V, max_position_embeddings=66, **SMALL, **ids),
              lambda: _bpe(ROBERTA_SPECIALS)),
    "distilbert": (lambda V, ids: dict(model_type="distilbert", vocab_size=V, max_position_embeddings=64, dim=32,
                                       n_layers=3, n_heads=4, hidden_dim=64, pad_token_id=ids["pad_token_id"]),
                   lambda: _wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])),
    "electra": (lambda V, ids: dict(model_type="electra", vocab_size=V, max_position_embeddings=64, embedding_size=16,
                                    **SMALL, **ids), lambda: _wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])),
    "deberta-v2": (lambda V, ids: dict(model_type="deberta-v2", vocab_size=V, max_position_embeddings=64,
                                       relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8,
                                       **SMALL, **ids),
                   lambda: _unigram(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], ("[CLS]", "[SEP]"),
                                    dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                         mask_token="[MASK]"))),
    "modernbert": (lambda V, ids: dict(model_type="modernbert", vocab_size=V, max_position_embeddings=64,
                                       global_attn_every_n_layers=1, local_attention=16, **SMALL, **ids),
                   lambda: _wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])),
}
LAYERS_HELD = ["bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet"]
LAYERS_NOT_HELD = {"deberta-v2": "DeBERTa-v2/v3", "modernbert": "ModernBERT"}


def make_teacher(family: str, folder: Path) -> Path:
    """A random teacher of `family` with its own tokenizer, saved as a folder `distill` takes."""
    config_fn, tokenizer_fn = FAMILIES[family]
    raw, tokens = tokenizer_fn()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, **tokens)
    ids = {f"{k}_token_id": getattr(tokenizer, f"{k}_token_id") for k in ("pad", "bos", "eos", "cls", "sep")
           if getattr(tokenizer, f"{k}_token_id") is not None}
    fields = config_fn(len(tokenizer), ids)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return {family: make_teacher(family, root / family) for family in FAMILIES}


TINY = ["--max-steps", "2", "--batch-size", "2", "--max-length", "16", "--stride", "4", "--embedding-size", "16",
        "--iterations", "2", "--logging-steps", "1", "--save-steps", "100", "--dtype", "fp32", "--warmup-steps", "0"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_tiny_teacher_of_each_family_distils_and_loads_back(family, teachers, corpus, tmp_path, caplog):
    folder = teachers[family]
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        # one family through the tokenizer's own windowing (its post-processor adds <s> ... </s>)
        unpacked = ["--no-pack"] if family == "xlm-roberta" else []
        assert main(["distill", "--teacher", str(folder), "--corpus", str(corpus), "--out", str(out), *TINY,
                     *unpacked]) == 0
    summary = json.loads((out / "final" / "distillation.json").read_text())
    init = summary["init"]
    teacher_config = AutoConfig.from_pretrained(folder)
    # the default recipe's 'last' resolved against this teacher's 3 layers before anything was stored
    assert summary["recipe"]["shared_layer_init"] == 3
    assert init["embeddings"] == ("copy" if family == "electra" else "svd")  # ELECTRA's E is 16: copied
    if family == "electra":
        assert init["projection"] == "copy"
    no_layer_lines = [r for r in caplog.records if "cannot become the student's" in r.getMessage()]
    if family in LAYERS_NOT_HELD:
        assert init["shared_layer"].startswith(f"random: the {LAYERS_NOT_HELD[family]} teacher's layers")
        assert len(no_layer_lines) == 1 and LAYERS_NOT_HELD[family] in no_layer_lines[0].getMessage()
    else:
        assert init["shared_layer"] == "teacher layer 3" and not no_layer_lines
    if family in ("roberta", "xlm-roberta", "mpnet"):  # positions counted from pad + 1 = 2
        assert "teacher positions 2.." in init["positions"]
    if family in ("mpnet", "distilbert", "modernbert", "deberta-v2"):
        assert init["token_types"] == "zero: the teacher has no token types"
    if family == "modernbert":
        assert init["positions"].startswith("random")
    if family == "mpnet":  # MPNet's relative position bias is carried over, not left out
        assert init["relative_bias"] == "the teacher's (one bucketed table shared by every layer)"
    assert init["head"].endswith("the output loss reads the teacher's head") and summary["output_loss"] is True
    # the student loads back, and pads and marks sentences as its teacher does
    student = AutoModel.from_pretrained(out / "final")
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    teacher_tokenizer = AutoTokenizer.from_pretrained(folder)
    assert student.config.pad_token_id == teacher_tokenizer.pad_token_id == teacher_config.pad_token_id
    assert student.config.bos_token_id == teacher_tokenizer.bos_token_id
    assert tokenizer("a cell")["input_ids"] == teacher_tokenizer("a cell")["input_ids"]
    if family in ("roberta", "xlm-roberta", "mpnet"):
        assert student.config.pad_token_id == 1 and tokenizer.cls_token == "<s>"
        assert student.config.max_position_embeddings == teacher_config.max_position_embeddings - 2
    batch = tokenizer(["a cell", "the protein binds to the receptor"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(student(**batch).last_hidden_state).all()


def plain_copy(folder: Path):
    """A plain student of all the teacher's layers at the teacher's own E (map 1..L, embedding copy,
    no adapters), and the teacher."""
    teacher = load_teacher(str(folder), attentions=False)
    L = teacher.num_layers
    E = getattr(teacher.config, "embedding_size", None) or teacher.config.hidden_size
    recipe = DistillRecipe(teacher=str(folder), iterations=L, layer_groups=L, embedding_size=E, adapters=False,
                           shared_layer_init="1", layer_map=list(range(1, L + 1)))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    student, info, _ = build_student(recipe, teacher, tokenizer, student_config(recipe, teacher.config, tokenizer),
                                     recipe.layer_map)
    return student.eval(), teacher, tokenizer, info


@pytest.mark.parametrize("family", LAYERS_HELD)
def test_a_plain_student_of_all_layers_reproduces_its_teacher(family, teachers):
    student, teacher, tokenizer, info = plain_copy(teachers[family])
    assert info["layer_groups_init"] == [[1], [2], [3]] and info["init"]["embeddings"] == "copy"
    batch = tokenizer(["the protein binds to the receptor in human cells", "a cell"], padding=True,
                      return_tensors="pt")
    real = batch["attention_mask"].bool()
    assert not real.all()  # padding is exercised: the teacher's pad id and position offset matter
    kwargs = {k: v for k, v in batch.items() if k != "token_type_ids" or teacher.family.token_type}
    with torch.no_grad():
        expected = teacher.encoder(**kwargs).last_hidden_state
        got = student.minialbert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert torch.allclose(got[real], expected[real], atol=1e-5, rtol=0), (got[real] - expected[real]).abs().max()


def test_layer_choices_resolve_against_the_teachers_depth():
    def resolved(depth, **fields):
        r = resolve_layer_choices(DistillRecipe(**fields), depth)
        return r.shared_layer_init, r.layer_map

    assert resolved(12, shared_layer_init="last", layer_map=["last", 0.5, "1.0"]) == (12, [12, 6, 12])
    assert resolved(24, shared_layer_init=1.0, layer_map=[0.25, 6]) == (24, [6, 6])
    assert resolved(6, shared_layer_init="average:0.5,last") == ("average:3,6", None)
    assert resolved(7, shared_layer_init="0.5") == (4, None)  # rounded up
    # whole numbers and 'average' stay as given (their stored form is earlier runs' identity)
    assert resolved(lambda: pytest.fail("the teacher is read only for relative choices"),
                    shared_layer_init="6", layer_map=[6, 6, 6]) == ("6", [6, 6, 6])
    for bad in ("1.5", "0.0"):
        with pytest.raises(MiniAlbertError, match="must lie in"):
            resolved(6, shared_layer_init=bad)
    with pytest.raises(MiniAlbertError, match="is not a teacher layer"):
        parse_shared_layer_init("lastish", 6)
    assert parse_shared_layer_init("average:0.5,last", 6) == [3, 6]


@pytest.mark.parametrize("name", ["cpu-demo", "cpu-2h", "retention-student"])
def test_shipped_recipes_mean_the_same_at_any_depth(name):
    recipe = load_recipe(name)
    for depth in (6, 12, 24):
        r = resolve_layer_choices(recipe, depth)
        assert r.shared_layer_init == depth and r.layer_map in (None, [depth] * recipe.iterations)


def test_cpu_2h_on_minilm_resolves_to_the_released_students_recipe():
    released = json.loads((Path(minialbert.__file__).parent / "released" / "minialbert-minilm" /
                           "distillation.json").read_text())["recipe"]
    recipe = resolve_layer_choices(load_recipe("cpu-2h"), 6).to_dict()
    assert (recipe["shared_layer_init"], recipe["layer_map"]) == (6, [6, 6, 6])
    # every field the released run stored from the recipe is what cpu-2h resolves to (not the run's own flags)
    from_flags = {"zero_shot_every", "zero_shot_data"}
    # The release ran with a local-file override of the corpus (wiki-offline + the project's biomedical
    # sentence file, no max_docs: the Makefile's `release` target); the recipe reads a hub set instead,
    # bounded by max_docs, and its notes say so. Only these differ on purpose.
    local_file_override = {"corpus", "notes", "max_docs"}
    same = [k for k in released if k not in from_flags | local_file_override]  # later fields: at their defaults
    assert recipe["corpus"].split("+")[0] == released["corpus"].split("+")[0] == "wiki-offline"
    assert (released["max_docs"], recipe["max_docs"]) == (None, 20000)  # the hub set, bounded per source
    assert {k: recipe[k] for k in same} == {k: released[k] for k in same}


def test_a_layer_outside_the_teacher_is_refused(teachers, corpus, tmp_path, capsys):
    assert main(["distill", "--teacher", str(teachers["bert"]), "--corpus", str(corpus), "--out", str(tmp_path / "o"),
                 *TINY, "--shared-layer-init", "6"]) == 2
    assert "out of range 1..3" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(teachers["bert"]), "--corpus", str(corpus), "--out", str(tmp_path / "p"),
                 *TINY, "--layer-map", "last,4"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_fit_head_gives_a_headless_mpnet_encoder_its_familys_head(teachers, corpus, tmp_path):
    from minialbert.distillation.fit_head import fit_mlm_head

    encoder = tmp_path / "mpnet-encoder"  # an encoder alone, as all-mpnet-base-v2 is shipped
    AutoModel.from_pretrained(teachers["mpnet"]).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(teachers["mpnet"]).save_pretrained(encoder)
    run = tmp_path / "headless"
    assert main(["distill", "--teacher", str(encoder), "--corpus", str(corpus), "--out", str(run), *TINY]) == 0
    summary = json.loads((run / "final" / "distillation.json").read_text())
    assert summary["output_loss"] is False and summary["init"]["head"].endswith("the teacher has no MLM head")
    head = tmp_path / "mpnet-mlm"
    report = fit_mlm_head(head, teacher=str(encoder), corpus=str(corpus), max_steps=2, batch_size=2, max_length=16,
                          eval_windows=4, dtype="fp32")
    assert report["trainable_parameters"] > 0
    mlm = AutoModelForMaskedLM.from_pretrained(head)
    assert type(mlm).__name__ == "MPNetForMaskedLM"
    original = AutoModel.from_pretrained(encoder)
    assert all(torch.equal(p, original.state_dict()[k]) for k, p in mlm.base_model.state_dict().items()
               if k in original.state_dict())  # only the head trained
    teacher = load_teacher(str(head), attentions=False)
    assert teacher.head is not None and teacher.family.name == "MPNet"


def test_a_teacher_of_an_unknown_family_is_refused_in_one_paragraph(corpus, tmp_path, capsys):
    raw, tokens = _wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, **tokens)
    config = AutoConfig.for_model("albert", vocab_size=len(tokenizer), embedding_size=16, max_position_embeddings=64,
                                  **SMALL)
    AutoModelForMaskedLM.from_config(config).save_pretrained(tmp_path / "albert")
    tokenizer.save_pretrained(tmp_path / "albert")
    assert main(["distill", "--teacher", str(tmp_path / "albert"), "--corpus", str(corpus),
                 "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "model type 'albert' is not in minialbert's table of teacher families" in err and "Traceback" not in err


def test_electra_embeddings_narrower_than_its_own_go_through_its_projection(teachers):
    """Student E 8 < ELECTRA's E 16 < H 32: the student's word table through its projection is the
    teacher's rank-8 word table through the teacher's projection (E -> H)."""
    teacher = load_teacher(str(teachers["electra"]), attentions=False)
    recipe = DistillRecipe(teacher="electra", iterations=2, embedding_size=8, shared_layer_init="last")
    tokenizer = AutoTokenizer.from_pretrained(teachers["electra"])
    student, info, _ = build_student(recipe, teacher, tokenizer, student_config(recipe, teacher.config, tokenizer),
                                     [3, 3])
    assert info["init"]["embeddings"] == "svd" and info["init"]["projection"] == "svd"
    W = teacher.encoder.embeddings.word_embeddings.weight
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    rank8 = (U[:, :8] * S[:8]) @ Vh[:8]
    project = teacher.encoder.embeddings_project
    base = student.base_model
    with torch.no_grad():
        got = base.projection(base.embeddings.word_embeddings.weight)
        assert torch.allclose(got, project(rank8), atol=1e-5)


def test_packed_windows_use_the_tokenizers_own_start_and_end_tokens(corpus):
    """A tokenizer that names only <s>/</s> (bos/eos, no cls/sep) windows with them; one without a
    mask token is refused in one paragraph before anything is tokenised."""
    from minialbert.data.corpus import CorpusOptions, build_windows

    raw, _ = _bpe(ROBERTA_SPECIALS)
    tokens = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, **tokens)
    assert tokenizer.cls_token_id is None and tokenizer.sep_token_id is None
    windows = build_windows(tokenizer, CorpusOptions(source=str(corpus), max_length=16, pack=True, max_docs=20),
                            cache=False)
    first = windows[0]
    assert first["input_ids"][0] == tokenizer.bos_token_id == 0
    assert tokenizer.eos_token_id in first["input_ids"] and first["special_tokens_mask"][0] == 1
    no_mask = PreTrainedTokenizerFast(tokenizer_object=raw, **{k: v for k, v in tokens.items() if k != "mask_token"})
    with pytest.raises(MiniAlbertError, match="lacks a mask token"):
        build_windows(no_mask, CorpusOptions(source=str(corpus), max_length=16, pack=True, max_docs=20), cache=False)


def test_max_length_counts_the_positions_a_roberta_table_spends_before_the_first_token():
    from transformers import RobertaConfig

    from minialbert.checkpoints import check_max_length
    from minialbert.errors import MiniAlbertError
    from minialbert.model.families import config_position_offset

    config = RobertaConfig(max_position_embeddings=66, pad_token_id=1)
    assert config_position_offset(config) == 2
    check_max_length("tiny-roberta", 64, config=config, position_offset=config_position_offset(config))
    with pytest.raises(MiniAlbertError, match="exceeds the 64 positions"):
        check_max_length("tiny-roberta", 65, config=config, position_offset=config_position_offset(config))
