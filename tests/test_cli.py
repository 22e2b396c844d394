"""The command line as a newcomer meets it: answers --help and argument errors before loading torch,
fails at once on a hub name it cannot reach, and says in each flag's help what the flag does and
what its default is (for `distill`, the recipe's value and where it comes from)."""

import argparse
import dataclasses
import os
import re
import subprocess
import sys

import pytest

from minialbert.cli.parsers import build_parser, subparsers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LIGHT = r"""
import contextlib, io, sys
from minialbert.cli import main
from minialbert.cli.parsers import build_parser, subparsers

commands = [p.prog.split()[1:] for p in subparsers(build_parser())]
codes = []
for argv in [["--help"]] + [c + ["--help"] for c in commands] + [["distill", "--no-such-flag"], ["finetune"],
                                                                  ["distill", "--max-steps", "many"]]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            codes.append(main(argv))
        except SystemExit as e:
            codes.append(e.code)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print(len(commands), codes[-3:], heavy[:5])
"""


def _run(code, env=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def test_help_and_argument_errors_load_neither_torch_nor_transformers():
    result = _run(LIGHT)
    assert result.returncode == 0, result.stderr[-3000:]
    count, rest = result.stdout.strip().split(" ", 1)
    assert int(count) >= 18  # every command and bench sub-command was asked for its help
    assert rest == "[2, 2, 2] []", rest  # three argument errors (exit 2), and nothing heavy loaded


def test_import_minialbert_is_light_and_still_registers_the_auto_classes():
    result = _run("import sys, minialbert\n"
                  "light = not {'torch', 'transformers'} & set(sys.modules)\n"
                  "from transformers import AutoConfig, AutoModelForMaskedLM\n"
                  "config = AutoConfig.for_model('minialbert', vocab_size=99, hidden_size=32, embedding_size=16, "
                  "num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)\n"
                  "print(light, type(AutoModelForMaskedLM.from_config(config)).__name__)")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "MiniAlbertForMaskedLM"]


def test_an_unreachable_hub_name_fails_at_once_without_retries(tmp_path):
    """A teacher typo, offline: one paragraph naming the problem, not the hub client's ~30 s of retries.
    The hub is pointed at a port nothing listens on; HF_HUB_OFFLINE is not set."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE" and not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=ROOT, HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    result = subprocess.run([sys.executable, "-m", "minialbert", "info", "no-such-org/no-such-model"],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot be reached" in result.stderr and "no-such-org/no-such-model" in result.stderr
    assert "Retrying" not in result.stderr and "Traceback" not in result.stderr


def test_a_hub_corpus_with_the_hub_unreachable_fails_without_retries(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE" and not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=ROOT, HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    code = ("from transformers import AutoTokenizer\n"
            "from minialbert.data.corpus import CorpusOptions, build_windows\n"
            "from minialbert.packaged import packaged_teacher_path\n"
            "from minialbert.errors import MiniAlbertError\n"
            "try:\n"
            "    build_windows(AutoTokenizer.from_pretrained(packaged_teacher_path()), "
            "CorpusOptions(source='hf:no-such-org/no-such-corpus', max_length=64))\n"
            "except MiniAlbertError as e:\n"
            "    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                            cwd=tmp_path)
    assert "Could not load the hub corpus 'hf:no-such-org/no-such-corpus'" in result.stdout, result.stderr[-2000:]
    assert "no connection to http://127.0.0.1:9" in result.stdout and "Retrying" not in result.stderr


def test_behind_a_proxy_the_hub_is_not_pre_checked_with_a_direct_connection(monkeypatch):
    """A raw TCP connect ignores HTTPS_PROXY: behind a proxy it refused every uncached hub name."""
    import socket

    from minialbert import checkpoints

    endpoint = "https://hub.example.invalid"
    for var in ("https_proxy", "http_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)

    def refused(*args, **kwargs):
        raise OSError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setattr(checkpoints, "_HUB_CHECKED", {})
    assert "no connection to https://hub.example.invalid" in checkpoints.hub_unreachable(endpoint, False)
    monkeypatch.setattr(checkpoints, "_HUB_CHECKED", {})
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.invalid:3128")
    assert checkpoints.hub_unreachable(endpoint, False) is None  # the hub client, through the proxy, tries
    monkeypatch.setenv("NO_PROXY", "hub.example.invalid")  # a bypassed host is reached directly: checked
    assert "no connection" in checkpoints.hub_unreachable(endpoint, False)
    assert checkpoints.hub_unreachable(endpoint, True) == "HF_HUB_OFFLINE is set"


def test_loading_errors_give_the_advice_once_with_one_full_stop(tmp_path):
    from minialbert.checkpoints import read_config
    from minialbert.errors import MiniAlbertError

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no-such-type"}')
    with pytest.raises(MiniAlbertError) as e:
        read_config(str(folder), role="the teacher ")
    assert ".." not in str(e.value) and str(e.value).count("Give a local checkpoint folder") == 1


def test_damaged_weights_are_named_as_damaged_not_as_an_unreadable_configuration(tmp_path):
    from minialbert.checkpoints import read_config
    from minialbert.errors import MiniAlbertError

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(MiniAlbertError) as e:
        read_config(str(folder), role="the teacher ")
    assert "model.safetensors is damaged" in str(e.value)
    assert "Could not read the configuration" not in str(e.value)


# --- help that helps --------------------------------------------------------------------------------

def _helps(parser):
    """(parser prog, flag, help text as printed) for every documented argument."""
    for p in [parser] + list(subparsers(parser)):
        formatter = p._get_formatter()
        for action in p._actions:
            if action.help is argparse.SUPPRESS or isinstance(action, (argparse._HelpAction,
                                                                       argparse._SubParsersAction)):
                continue
            flag = action.option_strings[0] if action.option_strings else action.dest
            yield p.prog, flag, formatter._expand_help(action) if action.help else ""


def _bare(text):
    return re.sub(r"[\s_-]+", " ", re.sub(r"\s*\(default: [^)]*\)", "", text)).strip().lower()


@pytest.mark.parametrize("argv", [[], ["distill", "--recipe", "cpu-2h"]])
def test_every_flag_says_what_it_does_and_names_its_default_once(argv):
    problems = []
    for prog, flag, text in _helps(build_parser(argv)):
        name = _bare(flag.lstrip("-"))
        if _bare(text) in ("", name):
            problems.append(f"{prog} {flag}: the description is only the flag's name")
        if "(default: None)" in text:
            problems.append(f"{prog} {flag}: (default: None)")
        if len(re.findall(r"\bdefault\b", text, re.IGNORECASE)) > 1:
            problems.append(f"{prog} {flag}: two default notes: {text}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("recipe, expected", [
    ("cpu-demo", {"--max-length": "128, from recipe cpu-demo", "--iterations": "3, from recipe cpu-demo",
                  "--temperature": "1.0, from the built-in defaults"}),
    ("cpu-2h", {"--max-steps": "3000, from recipe cpu-2h", "--layer-map": "last,last,last, from recipe cpu-2h",
                "--hidden-size": "the teacher's, from the built-in defaults"})])
def test_distill_help_shows_each_recipe_field_resolved_and_where_from(recipe, expected):
    from minialbert.distillation.recipe import DistillRecipe, recipe_fields

    parser = build_parser(["distill", "--recipe", recipe])
    helps = {flag: text for prog, flag, text in _helps(parser) if prog == "minialbert distill"}
    from_recipe = recipe_fields(recipe)
    for f in dataclasses.fields(DistillRecipe):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "notes":
            continue
        source = f"from recipe {recipe}" if f.name in from_recipe else "from the built-in defaults"
        assert re.search(r"\(default: [^)]+, " + source + r"\)", helps[flag]), (flag, helps[flag])
    for flag, value in expected.items():
        assert f"(default: {value})" in helps[flag], helps[flag]


def test_help_names_what_a_newcomer_looks_for():
    helps = {(prog, flag): text for prog, flag, text in _helps(build_parser())}
    assert "retention-student: the student of the budget-curve study" in helps[("minialbert distill", "--recipe")]
    for key in [("minialbert finetune", "--model"), ("minialbert bench embed", "--model")]:
        assert "minialbert-minilm" in helps[key] and "mpnet" in helps[key], helps[key]
    assert "(default: md)" in helps[("minialbert report", "--format")]


def test_distill_help_for_a_missing_recipe_is_one_error_line(capsys):
    from minialbert.cli import main

    assert main(["distill", "--recipe", "no-such-recipe", "--help"]) == 2
    assert "Unknown recipe 'no-such-recipe'" in capsys.readouterr().err


# --- one --max-length rule ------------------------------------------------------------------------------

def _commands_with(flag):
    return [p.prog.split()[1:] for p in subparsers(build_parser())
            if any(flag in a.option_strings for a in p._actions)]


def test_every_max_length_flag_has_one_limit_and_one_message(capsys, tmp_path):
    """Before: distill refused 1 with one wording, finetune with another, and bench/fit-head commands took
    0 or 1 and failed later (or not at all)."""
    from minialbert.cli import main
    from minialbert.distillation.recipe import load_recipe
    from minialbert.errors import MiniAlbertError

    commands = _commands_with("--max-length")
    assert len(commands) >= 7  # distill, fit-head, finetune, ablate and the benchmarks
    messages = set()
    for command in commands:
        for value in ("0", "7"):
            with pytest.raises(SystemExit):
                main(command + ["--max-length", value])
            err = capsys.readouterr().err.splitlines()[-1]
            messages.add(err.split("--max-length:", 1)[1].replace(f"(got {value})", "(got N)"))
    assert len(messages) == 1 and "at least 8 tokens" in messages.pop()
    for command in commands:  # 8 itself is accepted by the parser
        parser = build_parser()
        action = next(a for p in subparsers(parser) if p.prog.split()[1:] == command
                      for a in p._actions if "--max-length" in a.option_strings)
        assert action.type("8") == 8
    (tmp_path / "short.yaml").write_text("max_length: 7\n")
    with pytest.raises(MiniAlbertError, match=r"--max-length must be at least 8 tokens \(got 7\)"):
        load_recipe(str(tmp_path / "short.yaml")).validate()


# --- what ships names only what ships or what the hub serves -----------------------------------------------

def test_shipped_recipes_name_nothing_outside_the_package():
    """cpu-2h named ../shared/data/corpora/biomed/sentences.txt, so `distill --recipe cpu-2h` stopped
    with "Corpus ... does not exist" anywhere but beside this repository."""
    from minialbert.distillation.recipe import RECIPE_DIR, available_recipes, load_recipe

    for name in available_recipes():
        text = (RECIPE_DIR / f"{name}.yaml").read_text()
        assert "../" not in text and "retention_study.py" not in text, name
        for source in load_recipe(name).corpus.split("+"):
            assert source == "wiki-offline" or source.startswith("hf:"), (name, source)


def test_the_released_card_and_the_card_writers_cite_no_local_folders():
    from minialbert.model_card import corpus_datasets, public_corpus
    from minialbert.packaged import released_student

    card = (released_student("minialbert-minilm") / "README.md").read_text()
    assert "../" not in card and "minialbert distill --recipe cpu-2h" in card
    assert public_corpus("wiki-offline+../shared/data/corpora/biomed/sentences.txt") == \
        "wiki-offline + sentences.txt (a local file)"
    assert corpus_datasets("wiki-offline+hf:timaeus/pile-pubmed_abstracts::train") == ["timaeus/pile-pubmed_abstracts"]
