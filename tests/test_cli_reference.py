"""The committed command-line reference (docs/reference/cli.md) is what the parsers print: a flag,
a help text or a command changed without `python -m scripts.cli_reference` fails here."""

from scripts import cli_reference


def test_the_committed_cli_reference_is_what_the_parsers_print():
    committed = cli_reference.PAGE.read_text()
    assert committed == cli_reference.render(), (
        "docs/reference/cli.md is stale: run `python -m scripts.cli_reference` and commit it")
    assert cli_reference.main(["--check"]) == 0


def test_the_reference_has_every_command_and_sub_command():
    text = cli_reference.PAGE.read_text()
    names = [" ".join(("minialbert",) + path) for path, _ in cli_reference.subcommands(cli_reference.build_parser())]
    assert {"minialbert distill", "minialbert finetune", "minialbert bench embed", "minialbert export"} <= set(names)
    missing = [n for n in names if f"## `{n}`" not in text]
    assert not missing, missing


def test_check_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text(cli_reference.render().replace("--max-steps", "--max-stepz", 1))
    monkeypatch.setattr(cli_reference, "PAGE", stale)
    assert cli_reference.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert cli_reference.main([]) == 0  # rewrites it
    assert stale.read_text() == cli_reference.render()
