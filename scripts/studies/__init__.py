"""The project's studies, one module each, over one small job runner (`jobs`). Each study runs
`minialbert` commands, copies their small result files into docs/results as each job ends, and
builds its summary and tables from the committed files only:

    python -m scripts.studies budget-curve run|collect|summarise       # docs/studies/budget-curve.md
    python -m scripts.studies pair-encoding run|table                  # section 6
    python -m scripts.studies embedding-curve NAME=RUN ...             # section 7
    python -m scripts.studies task-distillation run|summary|table|augment-probe   # section 8
    python -m scripts.studies retention run|summary|table              # section 9: the released student
    python -m scripts.studies frontier run|speed|summary               # section 10: recursive or plain
"""
