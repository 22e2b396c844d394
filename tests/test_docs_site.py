"""The documentation site builds under `mkdocs build --strict` (a broken link or anchor, a page left
out of `nav`, an API entry naming something that does not exist: each stops the build), and the
pages written for users hold what they must: every public name in the API reference, every module
in the layout, nothing that needs the project's own ../shared folder."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# Pages a user follows: their commands must run without this project's ../shared folder. (The study
# pages record how the studies ran; they name the project's data folder as data/..., see studies/index.md.)
USER_PAGES = [REPO / "README.md", *DOCS.glob("*.md"), *DOCS.glob("guide/*.md"), *DOCS.glob("reference/*.md"),
              *DOCS.glob("studies/*.md")]


def _mkdocs():
    try:
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError:
        reason = "mkdocs / mkdocstrings are not installed (pip install -e '.[docs]'; `make test` installs them)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{reason}; under CI they must be")
        pytest.skip(reason)


def test_the_site_builds_strictly(tmp_path):
    _mkdocs()
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("index.html", "getting-started.html", "reference/cli.html", "reference/api.html",
                 "studies/retention.html", "guide/distillation.html"):
        assert (site / page).is_file(), page
    api = (site / "reference" / "api.html").read_text()
    assert "prepare_adapter_tuning" in api  # the docstrings were rendered, not only the headings
    # offline: no web fonts, no script or stylesheet from another host
    for page in site.rglob("*.html"):
        remote = re.findall(r'<(?:link|script)[^>]+(?:href|src)="(https?://[^"]+)"', page.read_text())
        assert not remote, (page.name, remote)


def test_a_page_outside_the_navigation_fails_the_build(tmp_path):
    _mkdocs()
    import shutil

    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "docs" / "orphan.md").write_text("# A page nobody can reach\n")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)})
    assert result.returncode != 0 and "orphan.md" in result.stdout + result.stderr


def test_every_public_name_is_in_the_api_reference():
    import minialbert

    api = (DOCS / "reference" / "api.md").read_text()
    documented = set(re.findall(r"^::: [\w.]+\.(\w+)$", api, re.M))
    assert set(minialbert.__all__) <= documented, set(minialbert.__all__) - documented
    for name in minialbert.__all__:
        assert getattr(minialbert, name) is not None


def test_the_layout_names_every_module():
    layout = (DOCS / "reference" / "layout.md").read_text()
    modules = [p for root in ("minialbert", "scripts") for p in (REPO / root).rglob("*.py")
               if "released" not in p.parts and p.name != "__init__.py"]
    missing = [str(p.relative_to(REPO)) for p in modules if p.name not in layout]
    assert not missing, f"docs/reference/layout.md does not mention {missing}"


def test_no_page_for_users_needs_the_projects_shared_folder():
    found = [f"{p.relative_to(REPO)}:{n}" for p in USER_PAGES for n, line in enumerate(p.read_text().splitlines(), 1)
             if "../shared" in line or "/shared/data" in line]
    assert not found, found


def test_no_page_for_users_names_the_projects_own_corpus_files():
    """The project's data/corpora files (e.g. its biomedical sentence file) do not ship: a user page's
    example must use a hub set or a file of the user's own. Study pages may say what a study used."""
    pages = [p for p in USER_PAGES if p.parent != DOCS / "studies"]
    assert {DOCS / "getting-started.md", DOCS / "index.md", DOCS / "guide" / "distillation.md"} <= set(pages)
    found = [f"{p.relative_to(REPO)}:{n}" for p in pages for n, line in enumerate(p.read_text().splitlines(), 1)
             if "data/corpora" in line]
    assert not found, found


def test_the_readme_is_short_and_points_into_the_docs():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / target).is_file(), target
    assert "make demo" in readme and "make test" in readme
