"""Fine-tuning and evaluation: GLUE and biomedical NER, full and adapter tuning, grids, reports.
`options` (every flag), `identity` (what a run's numbers depend on), `models` (the task model),
`runner` (runs, grids, resume), `report` (results.json summaries and tables)."""
