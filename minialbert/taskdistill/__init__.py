"""Task distillation (docs/method.md section 7): a fine-tuned teacher teaches the student on task
inputs. `options` (its settings), `teacher` (finding, checking and running the teacher), `augment`
and `transfer_set` (the inputs the teacher labels), `losses` and `trainers` (stages 1 and 2)."""
