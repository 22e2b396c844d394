"""The retention study's prose: the README's headline and goals, the embedding table and goals,
each written from summary.json (or embed.json, release-curve.json), never typed by hand."""

from __future__ import annotations

from minialbert.records import read_json

from .config import GOALS, PREVIOUS_STUDY, RELEASED_NAME, RESULTS_DIR


def _summary() -> dict:
    return read_json(RESULTS_DIR / "summary.json")


def _left_out(s: dict) -> str:
    """The tasks the summary leaves out of the averages, each with why ('' when none)."""
    return "; ".join(f"{t} left out: {why}" for t, why in s["excluded_tasks"].items())


def _pending(s: dict) -> str:
    """How many runs the summary still waits for ('' when none)."""
    return (f" **Provisional: {len(s['pending'])} runs pending** ({'; '.join(s['pending'])}); the figures are over the "
            "reporting seeds in so far." if s.get("pending") else "")


def _headline_figure(s: dict) -> str:
    over = s["gain_retention_over_seeds"]
    if over["std"] is None:
        return f"{s['gain_retention']:.3f}"
    return (f"{s['gain_retention']:.3f} (over seeds {', '.join(over['per_seed'])}: {over['mean']:.3f} ± "
            f"{over['std']:.3f}, the gain retention of each reporting seed, then their mean ± sample std)")


def headline() -> str:
    """The study's headline, from summary.json; without a summary (a rerun in progress), what is done
    and the previous complete study."""
    if not (RESULTS_DIR / "summary.json").is_file():
        done = len(list(RESULTS_DIR.glob("*/*/results.json")))
        return (f"**The retention study is being rerun** with every pipeline as a candidate on every task "
                f"(task distillation included); {done} result folders are in so far (docs/results/retention); the "
                f"table below shows a task once both models have a row for it, and the summary comes with the last "
                f"row. The previous complete study ({PREVIOUS_STUDY}) is in git history.")
    s = _summary()
    if s["gain_retention"] is None:
        return f"**Gain retention: pending**, no task has two reporting seeds of both models yet.{_pending(s)}"
    left_out = _left_out(s) or "no task left out"
    return (f"**Gain retention {_headline_figure(s)}**: the student `{s['student']}` keeps that share of the "
            f"teacher's gain over the majority class, averaged over {len(s['included_tasks'])} tasks ({left_out}); "
            f"every score is the mean over the reporting seeds ({_seeds_in(s)}), which took no part in picking the "
            f"pipeline and the learning rate (seed 42 picks). The plain ratio of the averages is {s['retention']:.3f} ({s['student_average']:.2f} "
            f"against {s['teacher_average']:.2f}), with {s['student_parameters'] / 1e6:.2f} M parameters, "
            f"{100 * s['parameter_ratio']:.0f}% of the teacher's. Zero-shot STS-B: {s['zero_shot_spearman']:.2f} "
            f"(teacher {s['teacher_zero_shot_spearman']:.2f}). Tasks the student really learned (above its majority "
            f"baseline by more than its seed spread): {len(s['tasks_learned'])} of {len(s['tasks'])}"
            + (f" ({', '.join(s['tasks_learned'])}); spread not measured: "
               f"{', '.join(s['tasks_spread_not_measured']) or 'none'}." if s['tasks_learned'] else ".")
            + _pending(s))


def _seeds_in(s: dict) -> str:
    """The reporting seeds the figures stand on so far, against the study's 43-45."""
    seeds = sorted((s.get("gain_retention_over_seeds") or {}).get("per_seed", {}), key=int)
    return "43-45" if seeds == ["43", "44", "45"] else f"{', '.join(seeds) or 'none'} so far, of 43-45"


def goals(summary: dict | None = None) -> str:
    """The study's goals checked against summary.json (or the summary given): gain retention and
    plain retention over the tasks whose teacher beats its majority baseline, every task learned,
    and what the study cost."""
    if summary is None:
        if not (RESULTS_DIR / "summary.json").is_file():
            return "Checked against `summary.json` when the study's last row is in."
        summary = _summary()
    s, n = summary, len(summary["included_tasks"])
    left_out = _left_out(s)
    over = f"over the {n} tasks whose teacher beats its majority baseline" + (f" ({left_out})" if left_out else "")

    def verdict(key: str) -> str:
        if s[key] is None:
            return "pending"
        met = "met" if s[key] >= GOALS[key] else "**missed**"
        return f"{met} so far (provisional: runs pending)" if s.get("pending") else met

    failed = [t for t in s["tasks"] if s["per_task"][t]["student_beats_majority_by_more_than_its_spread"] is False]
    unmeasured = s["tasks_spread_not_measured"]
    learned = "met" if not failed and not unmeasured else "**missed**" if failed else "not checked on every task"
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    avg = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    lines = [f"- gain retention >= {GOALS['gain_retention']}: {verdict('gain_retention')}, {fmt(s['gain_retention'])} {over}",
             f"- plain retention >= {GOALS['retention']}: {verdict('retention')}, {fmt(s['retention'])} "
             f"({avg(s['student_average'])} against {avg(s['teacher_average'])}, the same tasks)",
             f"- every task above its majority baseline by more than its seed spread: {learned}, "
             f"{len(s['tasks_learned'])} of {len(s['tasks'])}"
             + (f"; within the spread: {', '.join(failed)}" if failed else "")
             + (f"; one seed, spread not measured: {', '.join(unmeasured)}" if unmeasured else "")]
    if "cpu_hours" in s:
        lines.append(f"- the study's cost: {s['cpu_hours']:.1f} CPU hours over every job and attempt (`jobs.json`)")
    return "\n".join(lines)


def embeddings_table() -> str:
    """The student, the teacher and the static model2vec baselines of the same teacher, scored and
    timed in one `bench embed --compare` run (docs/results/retention/embed.json)."""
    e = read_json(RESULTS_DIR / "embed.json")
    rows = [(f"`{RELEASED_NAME}` (the released student)", e["parameters"], e["spearman"], e["sentences_per_s"], "")]
    for name, r in e.get("compare", {}).items():
        made = f", distilled in {r['distill_seconds']:.0f} s" if r.get("distill_seconds") else ""
        rows.append((f"`{name}`{made}", r["parameters"], r["spearman"], r["sentences_per_s"],
                     f"{r['spearman_retention']:.3f} / {r['speedup']:.2f}x"))
    lines = ["| model | parameters | STS-B dev Spearman | sentences/s | student's retention / speed-up against it |",
             "|---|---|---|---|---|"]
    lines += [f"| {m} | {p / 1e6:.2f} M | {sp:.2f} | {sps:,.0f} | {ratio} |" for m, p, sp, sps, ratio in rows]
    return "\n".join(lines)


def embedding_goals() -> str:
    """The zero-shot goals of the released student against embed.json and the release curve."""
    e = read_json(RESULTS_DIR / "embed.json")
    teacher, statics = e["compare"]["minilm"], {k: v for k, v in e["compare"].items() if k.startswith("model2vec:")}
    best = max(statics.values(), key=lambda r: r["spearman"])
    curve = read_json(RESULTS_DIR / "release-curve.json")["curve"]
    late = [r["zero_shot_spearman"] for r in curve if r["step"] >= 250]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return (f"- zero-shot >= 0.97 of the teacher ({0.97 * teacher['spearman']:.1f}): {verdict(e['spearman'] >= 0.97 * teacher['spearman'])}, "
            f"{e['spearman']:.2f} ({teacher['spearman_retention']:.3f} of {teacher['spearman']:.2f})\n"
            f"- >= 1.7x the teacher's sentences/s in the same run: {verdict(teacher['speedup'] >= 1.7)}, {teacher['speedup']:.2f}x\n"
            f"- >= 4 points above the model2vec baseline: {verdict(e['spearman'] - best['spearman'] >= 4)}, "
            f"{e['spearman'] - best['spearman']:+.2f} against the stronger one (`{best['model']}`)\n"
            f"- <= 30% of the teacher's parameters: {verdict(teacher['parameter_ratio'] <= 0.3)}, "
            f"{100 * teacher['parameter_ratio']:.1f}%\n"
            f"- over the run: {curve[0]['zero_shot_spearman']:.2f} at step 0, then between {min(late):.2f} and "
            f"{max(late):.2f} from step 250 ({curve[1]['tokens'] / 1e6:.2f} M tokens) to step {curve[-1]['step']} "
            f"({curve[-1]['tokens'] / 1e6:.2f} M tokens)")
