"""What a user types is what they gets: settings precedence, the `auto` pair head, adapter files that no
tool misreads, transformers' forward contract, folders that load without this package, run
identity derived from the option fields."""

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from minialbert import MiniAlbertForSequenceClassification, MiniAlbertModel
from minialbert.cli import main
from minialbert.distillation.recipe import DistillRecipe, resolve_recipe

from helpers import batch, save_tiny_student, shared_path, tiny_config

REPO = Path(__file__).resolve().parents[1]
FAST = ["--max-docs", "40", "--max-length", "32", "--batch-size", "4", "--dtype", "fp32"]


# --- settings precedence: flag > preset > recipe > defaults, field by field -----------------------

def flags(**given):
    return {name: given.get(name) for name in DistillRecipe.names()}


def test_an_explicit_preset_wins_over_the_recipe_and_an_explicit_flag_wins_over_the_preset():
    resolved = resolve_recipe("cpu-demo", flags(preset="minialbert-312"))  # cpu-demo sets E 128, N 3
    r = resolved.recipe
    assert (r.embedding_size, r.iterations, r.adapters) == (312, 6, True)
    assert resolved.sources["embedding_size"] == "preset minialbert-312" and resolved.sources["preset"] == "flag"
    assert resolved.sources["learning_rate"] == "recipe cpu-demo" and resolved.sources["num_proc"] == "default"
    assert len(resolved.overridden) == 2 and all("minialbert-312" in line for line in resolved.overridden)
    explicit = resolve_recipe("cpu-demo", flags(preset="minialbert-312", iterations=3)).recipe
    assert (explicit.embedding_size, explicit.iterations) == (312, 3)
    # the README's example: the preset's student, and checkpoints a fraction of the run apart
    readme = resolve_recipe("cpu-demo", flags(teacher="bert-base-uncased", preset="minialbert-312",
                                               corpus="hf:wikipedia:20220301.en:train", max_steps=100000)).recipe
    assert (readme.embedding_size, readme.iterations, readme.adapters) == (312, 6, True)
    assert readme.save_steps < 1 and readme.save_steps * readme.max_steps >= 10000  # a handful of checkpoints


def test_distill_with_a_preset_builds_what_the_preset_says_and_records_where_settings_came_from(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["distill", "--preset", "minialbert-312", "--max-steps", "0", "--out", str(out)]) == 0
    config = json.loads((out / "final" / "config.json").read_text())
    assert (config["embedding_size"], config["num_hidden_layers"], config["use_adapters"]) == (312, 6, True)
    info = json.loads((out / "final" / "distillation.json").read_text())
    assert info["student"]["embedding_size"] == 312 and info["student"]["iterations"] == 6
    assert info["settings_sources"]["iterations"] == "preset minialbert-312"
    assert info["settings_sources"]["max_steps"] == "flag"
    printed = capsys.readouterr().out
    assert "from preset minialbert-312: iterations, embedding_size, adapters" in printed
    assert printed.count("the explicit preset wins") == 2  # E and N contradicted the recipe: one line each


def test_make_demo_runs_in_a_folder_of_its_own():
    makefile = (REPO / "Makefile").read_text()
    demo = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "runs/distill" not in demo and "--out runs/demo" in demo and "rm -rf runs/demo" in demo


# --- `--pair-encoding auto` ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    return save_tiny_student(tmp_path_factory.mktemp("student"))


@pytest.mark.parametrize("task,given,expected", [("stsb", None, "bi"), ("mrpc", None, "bi"), ("rte", None, "cross"),
                                                 ("stsb", "cross", "cross")])
def test_auto_pair_encoding_picks_the_measured_head_and_records_the_choice(student_dir, tmp_path, task, given,
                                                                           expected):
    glue = shared_path("data", "glue")
    extra = ["--pair-encoding", given] if given else []
    assert main(["finetune", "--model", student_dir, "--task", task, "--data-dir", str(glue), "--max-steps", "1",
                 "--max-train-samples", "8", "--max-length", "32", "--dtype", "fp32", "--save-models", "none",
                 "--out", str(tmp_path), *extra]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["pair_encoding"] == expected
    assert results["pair_encoding_choice"].startswith("given" if given else "auto")


# --- adapter files with names of their own; one named-adapter mechanism -------------------------

def test_adapter_task_files_carry_no_peft_name_and_legacy_folders_still_load(student_dir, tmp_path):
    from minialbert import load_adapter_model

    glue = shared_path("data", "glue")
    assert main(["finetune", "--model", student_dir, "--task", "rte", "--data-dir", str(glue), "--adapter-tuning",
                 "--max-steps", "2", "--max-train-samples", "8", "--max-length", "32", "--dtype", "fp32",
                 "--out", str(tmp_path / "ft")]) == 0
    task = next((tmp_path / "ft" / "runs").glob("*/adapter"))
    names = {p.name for p in task.iterdir()}
    assert {"minialbert_adapter.json", "minialbert_adapter.safetensors"} <= names
    assert not names & {"adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"}
    ids, mask = batch(vocab=1000)
    expected = load_adapter_model(task)(input_ids=ids, attention_mask=mask).logits
    legacy = tmp_path / "legacy"  # an earlier version's folder, under PEFT's names
    legacy.mkdir()
    (legacy / "adapter_config.json").write_text((task / "minialbert_adapter.json").read_text())
    (legacy / "adapter_model.safetensors").write_bytes((task / "minialbert_adapter.safetensors").read_bytes())
    assert torch.allclose(load_adapter_model(legacy)(input_ids=ids, attention_mask=mask).logits, expected)


def test_the_checkpoints_own_adapters_are_the_default_named_set():
    model = MiniAlbertForSequenceClassification(tiny_config(num_labels=2))
    base = model.base_model
    assert base.encoder.adapter_names() == ["default"] and base.encoder.adapter_set() is base.encoder.adapters
    trainable = model.prepare_adapter_tuning("task")  # a second set, beside the default one
    assert base.encoder.adapter_names() == ["default", "task"] and base.encoder.active_adapter == "task"
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("minialbert.encoder.named_adapters.task.", "classifier.")) for n in names)
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    ids, mask = batch()
    with torch.no_grad():
        default = base(ids, mask, adapter="default").last_hidden_state
        task = base(ids, mask).last_hidden_state  # the active set
        base.set_adapter("default")
        assert torch.equal(base(ids, mask).last_hidden_state, default) and not torch.equal(task, default)


# --- transformers' forward contract ---------------------------------------------------------------

def test_inputs_embeds_position_ids_and_tuples_follow_transformers():
    torch.manual_seed(0)
    model = MiniAlbertModel(tiny_config()).eval()
    ids, mask = batch()
    with torch.no_grad():
        out = model(ids, mask, output_hidden_states=True, output_attentions=True)
        embeds = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask)
        assert torch.allclose(embeds.last_hidden_state, out.last_hidden_state, atol=1e-6)
        shifted = model(ids, mask, position_ids=torch.arange(2, 2 + ids.shape[1])[None])
        assert not torch.allclose(shifted.last_hidden_state, out.last_hidden_state)
        plain = model(ids, mask, position_ids=torch.arange(ids.shape[1])[None])
        assert torch.allclose(plain.last_hidden_state, out.last_hidden_state, atol=1e-6)
        as_tuple = model(ids, mask, output_hidden_states=True, output_attentions=True, return_dict=False)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == 3
        for a, b in zip(as_tuple, out.to_tuple()):  # transformers' test_model_outputs_equivalence
            a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
            assert all(torch.equal(x, y) for x, y in zip(a, b))
        head = MiniAlbertForSequenceClassification(tiny_config(num_labels=3)).eval()
        logits = head(ids, mask, return_dict=False)[0]
        assert logits.shape == (3, 3) and torch.equal(logits, head(ids, mask).logits)
    with pytest.raises(TypeError):
        model(ids, attention_masks=mask)  # a misspelt argument is an error, never silently dropped
    with pytest.raises(ValueError, match="exactly one"):
        model(ids, inputs_embeds=model.get_input_embeddings()(ids))


def test_attn_implementation_chooses_the_attention_path(tmp_path, monkeypatch):
    import minialbert.model.modeling_minialbert as modeling

    torch.manual_seed(0)
    MiniAlbertModel(tiny_config()).save_pretrained(tmp_path)
    ids, mask = batch()
    fused_calls = []
    real = modeling.F.scaled_dot_product_attention
    monkeypatch.setattr(modeling.F, "scaled_dot_product_attention",
                        lambda *a, **k: fused_calls.append(1) or real(*a, **k))
    outputs = {}
    for impl in ("sdpa", "eager"):
        model = AutoModel.from_pretrained(tmp_path, attn_implementation=impl).eval()
        assert model.config._attn_implementation == impl
        fused_calls.clear()
        with torch.no_grad():
            outputs[impl] = model(ids, mask).last_hidden_state
            assert len(fused_calls) == (3 if impl == "sdpa" else 0)  # N = 3 iterations
            fused_calls.clear()
            maps = model(ids, mask, output_attentions=True).attentions  # maps: the explicit softmax, always
            assert not fused_calls and len(maps) == 3
            assert torch.allclose(maps[0].sum(-1), torch.ones(3, 4, 12), atol=1e-5)
    assert torch.allclose(outputs["sdpa"], outputs["eager"], atol=1e-5)


STUDENT_KINDS = {"recursive": {}, "plain": dict(num_hidden_groups=3, use_adapters=False),
                 "relaxed": dict(relaxation_rank=4)}


# Every kernel the class declares, by transformers' name (eager is always there).
DECLARED_KERNELS = ["eager"] + [impl for impl, flag in (("sdpa", "_supports_sdpa"),
                                                        ("flex_attention", "_supports_flex_attn"),
                                                        ("flash_attention_2", "_supports_flash_attn"))
                                if getattr(MiniAlbertModel, flag)]


@pytest.mark.parametrize("kind", STUDENT_KINDS)
def test_every_declared_kernel_agrees_with_eager_with_and_without_maps(kind):
    """Every kernel the class declares (transformers' attention interface, with the mask its builder
    makes), for every student kind, on a padded batch, from input_ids and from inputs_embeds, with
    and without attention maps: the same states as the explicit softmax, and when maps are asked
    for, eager's maps (padded keys get no weight). Flex attention compiles with inductor here (about
    40 s on 2 cores, once per process)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert DECLARED_KERNELS[:3] == ["eager", "sdpa", "flex_attention"]
    torch.manual_seed(0)
    model = MiniAlbertModel(tiny_config(**STUDENT_KINDS[kind])).eval()
    ids, mask = batch()
    inputs = {"input_ids": {"input_ids": ids}, "inputs_embeds": {"inputs_embeds": model.get_input_embeddings()(ids)}}
    outputs = {}
    with torch.no_grad():
        for impl in DECLARED_KERNELS:
            assert impl == "eager" or impl in ALL_ATTENTION_FUNCTIONS
            model.set_attn_implementation(impl)
            assert model.config._attn_implementation == impl
            for source, given in inputs.items():
                for maps in (False, True):
                    outputs[impl, source, maps] = model(**given, attention_mask=mask, output_attentions=maps)
    eager = outputs["eager", "input_ids", True]
    assert len(eager.attentions) == 3 and all(m.shape == (3, 4, 12, 12) for m in eager.attentions)
    assert torch.allclose(eager.attentions[1][1, :, :, 7:], torch.zeros(4, 12, 5))  # padded keys get no weight
    for (impl, source, maps), out in outputs.items():
        torch.testing.assert_close(out.last_hidden_state, eager.last_hidden_state, atol=1e-5, rtol=1e-5,
                                   msg=lambda m: f"{impl}, {source}, maps {maps}: {m}")
        if maps:
            for theirs, ours in zip(out.attentions, eager.attentions, strict=True):
                torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
        else:
            assert out.attentions is None


def test_the_attention_parity_script_on_the_cpu_matches_every_declared_kernel_to_eager():
    """scripts/device/attention_parity.py, the script a lent GPU runs, run here on the CPU (fp32, a
    padded batch, the released student and random plain and relaxed students): every kernel the class
    declares matches eager, and flash attention, whose package is not installed, is reported
    unavailable and stays undeclared (the script leaves the declaration as it found it)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "device" / "attention_parity.py"
    spec = importlib.util.spec_from_file_location("attention_parity", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result = script.parity("cpu", dtypes=(torch.float32,), texts=script.TEXTS[:5], timing=False)
    assert not MiniAlbertModel._supports_flash_attn
    declared = {"sdpa": MiniAlbertModel._supports_sdpa, "flex_attention": MiniAlbertModel._supports_flex_attn}
    assert declared == {"sdpa": True, "flex_attention": True}
    assert result["padding_fraction"] > 0  # the batch is padded: masks matter
    for shape in script.SHAPES:
        measured = result[f"{shape}-float32"]["vs_eager"]
        for impl in declared:
            assert measured[impl]["max_abs_diff_real_tokens"] < 1e-4, (shape, impl, measured[impl])
        assert isinstance(measured["flash_attention_2"], str) and measured["flash_attention_2"].startswith("unavailable")


# --- folders that load where minialbert is not installed ------------------------------------------

WITHOUT_PACKAGE = textwrap.dedent("""
    import json, sys
    sys.modules["minialbert"] = None  # `import minialbert` now fails: only transformers' remote code can load these
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    from sentence_transformers import SentenceTransformer
    student, classifier, st, texts = json.loads(sys.argv[1])
    tok = AutoTokenizer.from_pretrained(student, trust_remote_code=True)  # it reads config.json, too
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(student, trust_remote_code=True).eval()(**enc).last_hidden_state
        logits = AutoModelForSequenceClassification.from_pretrained(classifier, trust_remote_code=True).eval()(**enc).logits
    embeddings = SentenceTransformer(st, trust_remote_code=True, device="cpu").encode(texts, convert_to_numpy=True)
    print(json.dumps({"hidden": hidden[:, 0].tolist(), "logits": logits.tolist(), "st": embeddings.tolist()}))
""")


def test_students_fine_tuned_models_and_exports_load_without_this_package(student_dir, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    classifier = tmp_path / "clf"
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_pretrained(student_dir, num_labels=2).save_pretrained(classifier)
    st = tmp_path / "st"
    assert main(["export", student_dir, "--sentence-transformers", str(st)]) == 0
    for folder in (Path(student_dir), classifier, st):
        assert {"configuration_minialbert.py", "modeling_minialbert.py"} <= {p.name for p in folder.iterdir()}
        auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
        assert {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"} <= set(auto_map)
    texts = ["a cat sat on the mat", "distillation keeps the teacher's knowledge"]
    result = subprocess.run([sys.executable, "-c", WITHOUT_PACKAGE,
                             json.dumps([student_dir, str(classifier), str(st), texts])],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    tok = AutoTokenizer.from_pretrained(student_dir)
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(student_dir).eval()(**enc).last_hidden_state[:, 0]
        logits = AutoModelForSequenceClassification.from_pretrained(classifier).eval()(**enc).logits
    local_st = SentenceTransformer(str(st), device="cpu").encode(texts, convert_to_numpy=True)
    assert torch.allclose(torch.tensor(remote["hidden"]), hidden, atol=1e-5)
    assert torch.allclose(torch.tensor(remote["logits"]), logits, atol=1e-5)
    assert torch.allclose(torch.tensor(remote["st"]), torch.tensor(local_st), atol=1e-5)


# --- run identity from the option fields ----------------------------------------------------------

def test_run_identity_is_every_option_field_but_those_marked_unable_to_change_numbers(student_dir):
    from minialbert.finetune.identity import run_identity
    from minialbert.finetune.options import FinetuneOptions

    from minialbert.taskdistill.options import TaskDistillationOptions

    from minialbert.data.glue import get_task

    rte = get_task("rte")
    opts = FinetuneOptions(model=student_dir, task="rte", out="x", pair_encoding="cross", dtype="fp32")
    identity = run_identity(opts, student_dir, rte)
    marked = {f.name for f in dataclasses.fields(FinetuneOptions) if f.metadata.get("identity") is False}
    distillation = {f.name for f in dataclasses.fields(TaskDistillationOptions)}
    # every option field, plus the code's numbers version (fingerprint.CODE_NUMBERS_VERSION)
    assert set(identity) == {f.name for f in dataclasses.fields(FinetuneOptions)} - marked - distillation | {"code_numbers"}
    taught = run_identity(dataclasses.replace(opts, teacher=student_dir), student_dir, rte, student_dir)
    assert set(taught) == set(identity) | {"distillation"} and set(taught["distillation"]) == distillation
    assert marked == {"out", "save_models", "learning_rates", "batch_size", "epochs", "max_steps", "runs", "grid",
                      "seeds_at_best", "checkpoint_minutes"}  # each is in the run id itself, or only says what is
    # kept where (a resumed run has the numbers of an uninterrupted one: test_task_distillation.py)
    assert identity["seed"] == 42  # the subset and the augmented copies are drawn with it
    with pytest.raises(ValueError):
        run_identity(FinetuneOptions(model=student_dir, task="rte", out="x"), student_dir, rte)  # 'auto' unresolved


def test_a_run_of_another_training_subset_is_never_reused(student_dir, tmp_path, caplog):
    import logging

    glue = str(shared_path("data", "glue"))
    common = ["finetune", "--model", student_dir, "--task", "rte", "--data-dir", glue, "--max-train-samples", "16",
              "--max-steps", "1", "--max-length", "32", "--dtype", "fp32", "--save-models", "none",
              "--out", str(tmp_path)]
    assert main([*common, "--seed", "42", "--runs", "2"]) == 0  # runs seeds 42 and 43 on the seed-42 subset
    with caplog.at_level(logging.INFO):
        assert main([*common, "--seed", "43"]) == 0  # seed 43 on the seed-43 subset: another run
    assert "reusing" not in caplog.text
    assert len(list((tmp_path / "runs").glob("rte-*-seed43-*.json"))) == 2


def test_stage_one_refuses_a_mismatched_teacher_as_general_distillation_does():
    from minialbert.errors import MiniAlbertError
    from minialbert.taskdistill.trainers import intermediate_model

    student = MiniAlbertModel(tiny_config())  # H 32, 4 heads
    wider = MiniAlbertModel(tiny_config(hidden_size=64, intermediate_size=128))
    with pytest.raises(MiniAlbertError, match="--project-hidden"):
        intermediate_model(student, wider)
    assert intermediate_model(student, wider, project_hidden=True).projection is not None
    other_heads = MiniAlbertModel(tiny_config(num_attention_heads=2))
    with pytest.raises(MiniAlbertError, match="--average-heads"):
        intermediate_model(student, other_heads)
    assert intermediate_model(student, other_heads, average_heads=True).average_heads


def test_ci_sets_ci_itself():
    run = (REPO / ".ci" / "run").read_text()
    assert "export CI=true" in run and "make test" in run


def test_a_release_folder_stores_fp16_weights_computes_in_fp32_and_loads_by_name(student_dir, tmp_path, monkeypatch):
    from safetensors import safe_open

    import minialbert.packaged as packaged
    from minialbert.checkpoints import resolve_model_name

    out = tmp_path / "released" / "tiny-student"
    assert main(["export", student_dir, "--release", str(out), "--release-name", "tiny-student",
                 "--release-command", "minialbert distill --recipe cpu-2h"]) == 0
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
        assert not any(k.startswith("lm_head") for k in f.keys())  # the base encoder only
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert "minialbert distill --recipe cpu-2h" in (out / "README.md").read_text()
    monkeypatch.setattr(packaged, "RELEASED", tmp_path / "released")
    assert resolve_model_name("tiny-student") == str(out)
    released = AutoModel.from_pretrained(resolve_model_name("tiny-student")).eval()
    original = AutoModel.from_pretrained(student_dir).eval()
    ids, mask = batch(vocab=1000)
    assert next(released.parameters()).dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(released(ids, mask).last_hidden_state, original(ids, mask).last_hidden_state, atol=2e-2)


# --- the checks of transformers' ModelTesterMixin that apply to an encoder like this one ---------
# (its repository was too large to bring here, so they are written out; head masking, head pruning
# and torchscript do not apply: the model takes no head mask, its one shared layer has no per-layer
# heads to prune, and export goes through torch.export)

from minialbert import MiniAlbertForMaskedLM, MiniAlbertForQuestionAnswering, MiniAlbertForTokenClassification  # noqa: E402

ALL_CLASSES = [MiniAlbertModel, MiniAlbertForMaskedLM, MiniAlbertForSequenceClassification,
               MiniAlbertForTokenClassification, MiniAlbertForQuestionAnswering]


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_initialization_determinism_and_config_driven_outputs(cls):
    zero = tiny_config(initializer_range=1e-10)  # transformers' _config_zero_init
    model = cls(zero)
    for name, p in model.named_parameters():
        assert round(p.data.mean().item() * 1e9) / 1e9 in (0.0, 1.0), name
    torch.manual_seed(0)
    config = tiny_config(output_attentions=True, output_hidden_states=True)
    model = cls(config).eval()
    ids, mask = batch()
    with torch.no_grad():
        first, second = model(ids, mask), model(ids, mask)
    key = "start_logits" if cls is MiniAlbertForQuestionAnswering else (
        "last_hidden_state" if cls is MiniAlbertModel else "logits")
    assert torch.equal(first[key], second[key])  # test_determinism
    assert len(first.attentions) == 3 and first.attentions[0].shape[-3:] == (4, 12, 12)  # set in the config
    assert len(first.hidden_states) == 4  # embeddings + one state per iteration


def test_input_embeddings_can_be_read_set_and_resized():
    torch.manual_seed(0)
    model = MiniAlbertForMaskedLM(tiny_config())
    embeddings = model.get_input_embeddings()
    assert embeddings is model.minialbert.embeddings.word_embeddings
    model.resize_token_embeddings(130)
    assert model.get_input_embeddings().weight.shape == (130, 16)
    assert model.get_output_embeddings().weight.shape[0] == 130 and model.config.vocab_size == 130
    ids, mask = batch(vocab=130)
    assert model(ids, mask).logits.shape == (3, 12, 130)
