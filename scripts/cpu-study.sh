#!/usr/bin/env bash
# The superseded 100-step CPU study (docs/results/cpu-study-100-steps.md); the retention study in docs/RESULTS.md
# comes from scripts/retention_study.py instead.
# Each stage resumes (finished students and fine-tuning runs are reused), so an interrupted study
# continues where it stopped. Budgets are environment variables; the defaults are what that study
# reports (about 2 hours on 2 CPU cores). Larger budgets: DISTILL_STEPS=2000 FT_STEPS=1000 ...
# EXTRA=1 adds CoLA, RTE and BC5CDR-chem for the teacher and the adapter-tuned student, the teacher
# completed with `fit-head`, and two more SST-2 fine-tuning seeds for three variants (that study ran both).
#   usage: bash scripts/cpu-study.sh            (from the repository root, inside .venv)
set -euo pipefail
SHARED=${SHARED:-../shared}
OUT=${OUT:-runs/study}
DISTILL_STEPS=${DISTILL_STEPS:-100}   # distillation steps per student (cpu-demo: 16 windows x 128 tokens)
FT_STEPS=${FT_STEPS:-100}             # fine-tuning steps per task
FIT_HEAD_STEPS=${FIT_HEAD_STEPS:-150}
GLUE=$SHARED/data/glue
NER=$SHARED/data/bioner
ABL=$OUT/ablation
TASKS="sst2 mrpc stsb ner-NCBI-disease"
mkdir -p "$OUT"
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/timing.log"; }

# ft MODEL TASK OUTDIR [extra args]: TASK is a GLUE name or ner-NAME; skipped when OUTDIR/results.json exists
ft() {
  local model=$1 task=$2 dir=$3; shift 3
  [ -f "$dir/results.json" ] && return 0
  log "finetune $model $task -> $dir"
  case $task in
    ner-*) set -- --task ner --data-dir "$NER/${task#ner-}" "$@" ;;
    *) set -- --task "$task" --data-dir "$GLUE" "$@" ;;
  esac
  minialbert finetune --model "$model" --max-steps "$FT_STEPS" --out "$dir" "$@"
}
ablate() {
  minialbert ablate --recipe cpu-demo --budget-steps "$DISTILL_STEPS" --finetune-steps "$FT_STEPS" \
    --finetune-lr 5e-4 --glue-dir "$GLUE" --ner-dir "$NER" "$@"
}

log "stage 1: students that answer the main questions (distillation vs MLM-only, adapters)"
ablate --variants full,no-adapters,mlm-only --tasks sst2,mrpc,stsb,ner:NCBI-disease --out "$ABL"
cp "$ABL/ablation.md" "$OUT/ablation-stage1.md"; cp "$ABL/ablation.json" "$OUT/ablation-stage1.json"

log "stage 2: the teacher, adapter tuning of the student, and the '*' case"
for t in $TASKS; do ft minilm $t "$OUT/teacher/$t" --lr 1e-4 --save-models none; done
for t in $TASKS; do ft "$ABL/full/distill/final" $t "$OUT/adapter/full/$t" --adapter-tuning --lr 1e-3; done
for t in $TASKS; do
  ft "$ABL/no-adapters/distill/final" $t "$OUT/adapter/no-adapters-star/$t" --adapter-tuning --lr 1e-3 --save-models none
done

log "stage 3: the alignment ablation (Table 3) and E = H (Table 4)"
ablate --variants full,hidden,attention,none,full-rank,no-adapters,mlm-only --tasks sst2,stsb,ner:NCBI-disease \
  --out "$ABL"

log "stage 4: a biomedical student (biomed corpus, general teacher) on NER"
BIO=$OUT/biomed
if [ ! -f "$BIO/final/distillation.json" ]; then
  resume=(); [ -d "$BIO/checkpoints" ] && resume=(--resume)
  minialbert distill --recipe cpu-demo --corpus "$SHARED/data/corpora/biomed/sentences.txt" \
    --windows-per-doc 1 --max-steps "$DISTILL_STEPS" --out "$BIO" "${resume[@]}"
fi
for n in NCBI-disease BC5CDR-chem; do ft "$BIO/final" ner-$n "$BIO/finetune/ner-$n" --lr 5e-4 --save-models none; done
ft "$ABL/full/distill/final" ner-BC5CDR-chem "$ABL/full/finetune/ner-BC5CDR-chem" --lr 5e-4 --save-models none

log "stage 5: ONNX fp32/int8 speed and SST-2 dev accuracy of the adapter-tuned student"
ADAPTER=$(ls -d "$OUT"/adapter/full/sst2/runs/*/adapter | head -1)
[ -f "$OUT/bench-onnx.json" ] || minialbert bench onnx --model "$ADAPTER" --task sst2 --data-dir "$GLUE" \
  --batch 8 --seq 128 --reps 10 --json > "$OUT/bench-onnx.json"

if [ "${EXTRA:-0}" = 1 ]; then
  log "extra: CoLA, RTE, BC5CDR-chem for the general students; the teacher completed with fit-head"
  for t in cola rte ner-BC5CDR-chem; do
    ft minilm $t "$OUT/teacher/$t" --lr 1e-4 --save-models none
    ft "$ABL/full/distill/final" $t "$OUT/adapter/full/$t" --adapter-tuning --lr 1e-3 --save-models none
  done
  HEAD=$OUT/minilm-mlm
  [ -f "$HEAD/fit_head.json" ] || minialbert fit-head --out "$HEAD" --max-steps "$FIT_HEAD_STEPS" --batch-size 16
  ablate --variants full --set teacher="$HEAD" --tasks sst2,stsb,ner:NCBI-disease --out "$OUT/ablation-fit-head"
  log "extra: seed noise on SST-2 (two more fine-tuning seeds for three alignment variants)"
  for v in full attention none; do
    ft "$ABL/$v/distill/final" sst2 "$OUT/seeds/$v/sst2" --lr 5e-4 --seed 43 --runs 2 --save-models none
  done
fi

log "figures and tables"
minialbert plot-attention --teacher minilm --student "$ABL/full/distill/final" \
  --text "The quick brown fox jumps over the lazy dog." --max-heads 6 --out "$OUT/attention.png" > "$OUT/attention.json"
minialbert plot-losses "$ABL/full/distill" --out "$OUT/losses-full.png"
minialbert report "$OUT/teacher" "$ABL"/*/finetune "$OUT/adapter" "$BIO/finetune" --format md > "$OUT/report.md"
if [ "${EXTRA:-0}" = 1 ]; then
  minialbert report "$OUT/ablation-fit-head"/*/finetune --format md > "$OUT/report-fit-head.md"
  minialbert report "$OUT/seeds" --format json > "$OUT/report-seeds.json"
fi
log "done"
