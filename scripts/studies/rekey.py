"""Re-key, do not rerun: carry the committed fine-tuning run records (docs/results/retention/*/*/runs)
and everything that names them (results.json, transfer-set folders) over to today's run identities
(minialbert/fingerprint.py), so that a rerun of the study reuses them instead of spending its CPU hours
again.

    python -m scripts.studies.rekey [--results docs/results/retention] [--folder PATH ...] [--dry-run]

How an old identity becomes a new one. Every record holds its resolved identity fields; each is kept
as it is except:
- a folder or file named by its content ('sha256:<hash>': the model, the data, the transfer data, the
  masked LM that augments) is looked up among the folders this script can read, hashed under the old
  rule (every file but README.md and hidden files) and under today's (`fingerprint.is_content`: no
  bytecode, no generated code copies, no records of our own commands): the released student, the
  packaged teacher, every GLUE and NER folder and the biomedical corpus under ../shared/data, and each
  --folder. A hash found among them becomes that folder's new hash (for the data and the packaged
  teacher both rules give the same hash; the released student loses its code copies and
  distillation.json). A hash that no readable folder gives -- the masked LM of the retention study
  (runs/retention/teacher-mlm, never committed: fit_head.json beside its weights was part of the old
  hash) -- is kept as it is, an opaque input: the rows it augmented are reused only where that folder
  is given with --folder, verified against the old hash and mapped to its new one;
- a teaching model kept by a fine-tuning run ('finetune-run:<run_id>', taskdistill.teacher) is mapped
  through the committed record of the run that produced it: its old run id becomes that record's new
  run id (the teaching-cross records are re-keyed first);
- `code_numbers` (fingerprint.CODE_NUMBERS_VERSION) is added: the records were computed by the code
  whose numbers are version 1.
The run id keeps its readable part (task, lr, batch, epochs, seed) and takes the hash of the new
identity. Before anything is written, every old run id is checked to be the hash of the identity its
record holds (a hand-edited record stops the script). A record already at today's identity is left
as it is, so the script can run again; the old records are deleted last (after the new records,
the summaries and the transfer sets are in place), so a run cut by a kill is completed by a rerun.
An input kept opaque is printed and counted. Transfer-set folders (transfer/<key>/) are renamed when their
old key is recomputed from a record of the same row; a folder matching no record is left and named.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from minialbert.errors import MiniAlbertError
from minialbert.fingerprint import (CODE_NUMBERS_VERSION, content_hash, file_sha256, numbers_identity,
                                    options_hash, save_hash_cache)
from minialbert.records import write_json

from .common import BIOMED, GLUE_DIR, NER_DIR, REPO, RESULTS

FOLDER_FIELDS = ("model", "data_dir", "augment_mlm", "transfer_data")


def old_rule_hash(path: Path) -> str:
    """A file's or folder's content hash as the code before CODE_NUMBERS_VERSION 1 computed it: every
    file but README.md and hidden ones (bytecode, code copies and records included)."""
    if path.is_file():
        return file_sha256(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != "README.md"
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(path).as_posix()}\0{file_sha256(p)}\n".encode())
    save_hash_cache()
    return h.hexdigest()


def default_folders() -> list[Path]:
    """The committed and shared inputs of the studies' runs that this machine holds."""
    from minialbert.packaged import packaged_teacher_path

    folders = [REPO / "minialbert" / "released" / "minialbert-minilm", Path(packaged_teacher_path()), BIOMED]
    for root in (GLUE_DIR, NER_DIR):
        folders += sorted(p for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
    return [f for f in folders if f.exists()]


def folder_map(folders) -> dict[str, str]:
    """'sha256:<old-rule hash>' -> 'sha256:<today's hash>' of each folder or file."""
    return {f"sha256:{old_rule_hash(Path(f))}": f"sha256:{content_hash(Path(f))}" for f in folders}


class Rekey:
    def __init__(self, folders: dict[str, str]):
        self.folders = folders
        self.runs: dict[str, str] = {}  # old run id -> new run id
        self.opaque: set[str] = set()  # content hashes no readable folder gives, kept as they were

    def _folder(self, value):
        if isinstance(value, str) and value.startswith("sha256:"):
            if value in self.folders:
                return self.folders[value]
            if value not in self.folders.values():
                self.opaque.add(value)
        return value

    def _teacher(self, value, where: Path):
        if isinstance(value, str) and value.startswith("finetune-run:"):
            old = value.split(":", 1)[1]
            if old not in self.runs:
                raise MiniAlbertError(f"{where}: its teacher {value} is no committed run record; re-key the "
                                      "records of the teaching model's grid with it (--results above both).")
            return f"finetune-run:{self.runs[old]}"
        return self._folder(value)

    def identity(self, old: dict, where: Path) -> dict:
        """Today's identity of a record's old one."""
        new = {k: self._folder(v) if k in FOLDER_FIELDS else v for k, v in old.items() if k != "code_numbers"}
        if isinstance(old.get("distillation"), dict):
            new["distillation"] = {k: self._teacher(v, where) if k == "teacher" else
                                   self._folder(v) if k in FOLDER_FIELDS else v
                                   for k, v in old["distillation"].items()}
        return numbers_identity(new)


def current(record: dict) -> bool:
    """The record already holds today's identity rule and its id is that identity's hash."""
    identity = record["identity"]
    return (identity.get("code_numbers") == CODE_NUMBERS_VERSION
            and record["run_id"].rsplit("-", 1)[1] == options_hash(identity))


def _records(results: Path) -> list[Path]:
    found = sorted(results.glob("**/runs/*.json"))
    # teaching models first: the rows they taught name their records
    return sorted(found, key=lambda p: "distillation" in json.loads(p.read_text()).get("identity", {}))


def _replace(value, ids: dict):
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_replace(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, ids) for k, v in value.items()}
    return value


def transfer_key(identity: dict, vocab_size: int) -> str:
    """A transfer set's folder name from a run's identity, by the package's own field list
    (taskdistill.transfer_set.transfer_fields): the data options, the transfer fields and the
    student's vocabulary, with the code's numbers version where the identity has one (today's rule;
    the old rule hashed the same fields without it)."""
    from minialbert.taskdistill.transfer_set import transfer_fields

    fields = transfer_fields(identity, identity["distillation"], vocab_size)
    return options_hash(numbers_identity(fields) if "code_numbers" in identity else fields)


def rekey(results: Path, folders: dict[str, str], vocab_size: int, dry_run: bool = False) -> dict:
    """Re-key every record under `results` and what names it; returns counts and the id map."""
    work = Rekey(folders)
    records = _records(results)
    rekeyed, renamed_sets, unmatched_sets = [], {}, []
    planned, known_sets = [], set()
    for path in records:
        record = json.loads(path.read_text())
        if current(record):
            work.runs[record["run_id"]] = record["run_id"]
            if "distillation" in record["identity"] and (path.parent.parent / "transfer").is_dir():
                known_sets.add(path.parent.parent / "transfer" / transfer_key(record["identity"], vocab_size))
            continue
        old_id, old_identity = record["run_id"], record["identity"]
        if old_id.rsplit("-", 1)[1] != options_hash(old_identity) or path.stem != old_id:
            raise MiniAlbertError(f"{path}: its run id is not the hash of the identity it holds (edited by "
                                  "hand?); restore it from git before re-keying.")
        identity = work.identity(old_identity, path)
        new_id = f"{old_id.rsplit('-', 1)[0]}-{options_hash(identity)}"
        work.runs[old_id] = new_id
        planned.append((path, {**record, "run_id": new_id, "identity": identity}, old_identity))
        rekeyed.append((str(path.relative_to(results)), new_id))
    ids = {o: n for o, n in work.runs.items() if o != n}
    # transfer sets: a row's folder named by an old key that one of its records gives
    for path, record, old_identity in planned:
        row = path.parent.parent
        if "distillation" not in old_identity or not (row / "transfer").is_dir():
            continue
        old_key, new_key = transfer_key(old_identity, vocab_size), transfer_key(record["identity"], vocab_size)
        if (row / "transfer" / old_key).is_dir() and old_key != new_key:
            renamed_sets[row / "transfer" / old_key] = row / "transfer" / new_key
    for folder in sorted(results.glob("**/transfer/*")):
        if folder.is_dir() and folder not in {*renamed_sets, *renamed_sets.values(), *known_sets}:
            unmatched_sets.append(str(folder.relative_to(results)))
    if work.opaque:  # named, not silently kept: a row they fed is reused only with its folder given
        for value in sorted(work.opaque):
            print(f"rekey: kept as it is (no folder read here gives this hash; give the folder with --folder "
                  f"to map it): {value}", file=sys.stderr)
    if not dry_run:
        # Nothing old goes before everything new is in place: the new records (the old ones stay),
        # the summaries naming them, the transfer sets; only then the old records. A kill anywhere
        # leaves the old records, so a rerun plans the same migration again and completes it.
        for path, record, _ in planned:
            write_json(path.with_name(f"{record['run_id']}.json"), record)
        for summary in sorted(results.glob("**/*.json")):
            if summary.parent.name == "runs":
                continue
            data = json.loads(summary.read_text())
            if (changed := _replace(data, ids)) != data:
                write_json(summary, changed)
        for old, new in renamed_sets.items():
            if new.exists():  # another record of the row renamed it already
                continue
            old.rename(new)
        # rows taught by a grid's run go before that run's record: a rerun after a kill here still
        # finds the old record of every teacher that a remaining old row names
        for path, record, _ in reversed(planned):
            if path.stem != record["run_id"]:
                path.unlink()
    return {"rekeyed": rekeyed, "runs": ids, "transfer_sets": {str(o.relative_to(results)): n.name
                                                               for o, n in renamed_sets.items()},
            "unmatched_transfer_sets": unmatched_sets, "opaque": sorted(work.opaque)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.studies.rekey", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(RESULTS / "retention"), help="the study folder whose records to re-key")
    p.add_argument("--folder", action="append", default=[], help="another input folder of the runs (e.g. the "
                   "work folder's teacher-mlm), mapped from its old hash to its new one")
    p.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    args = p.parse_args(argv)
    from transformers import AutoTokenizer

    try:
        folders = folder_map([*default_folders(), *map(Path, args.folder)])
        vocab = len(AutoTokenizer.from_pretrained(REPO / "minialbert" / "released" / "minialbert-minilm"))
        report = rekey(Path(args.results), folders, vocab, args.dry_run)
    except MiniAlbertError as e:
        print(f"rekey: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"folders": folders, **report}, indent=1))
    print(f"{len(report['rekeyed'])} records re-keyed, {len(report['transfer_sets'])} transfer sets renamed, "
          f"{len(report['unmatched_transfer_sets'])} left, {len(report['opaque'])} opaque inputs kept", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
