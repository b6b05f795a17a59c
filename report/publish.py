"""The W&B report of a report's runs (wandb_workspaces.reports.v2): per cell, line plots of exactly its
training runs grouped by variant (return, sparsity, lambda) and a table of their compress runs.

Runs are selected by name: a training run's W&B display name is its run directory's name, a compress
run's is `<run name>__compress_<method>`. So the report shows the runs given and no others, whatever
their W&B group (l0rl groups runs by variant, `runkit.tracker.variant_group`).
"""

from pathlib import Path
from typing import Any

from l0rl.compress.pipeline import output_names
from l0rl.errors import UsageError
from l0rl.report.collect import Record
from l0rl.runkit.tracker import has_wandb_key

TRAIN_PANELS = (
    ("episodic return", ["charts/episodic_return"]),
    ("sparsity", ["l0/sparsity", "gmp/sparsity"]),
    ("L0 lambda", ["l0/lambda"]),
)
COMPRESS_COLUMNS = [
    "run:displayName",
    "config:method.value",
    "config:sparsity.value",
    "summary:compress/original/return_mean",
    "summary:compress/low-rank/return_mean",
    "summary:compress/low-rank/params",
    "summary:compress/low-rank/compression_params",
    "summary:compress/low-rank/bytes",
    "summary:compress/low-rank/compression_bytes",
    "summary:compress/original/latency_us",
    "summary:compress/low-rank/latency_us",
]
GROUP_BY = "config.exp_name"
"""Plots group a cell's runs by exp_name: one name per variant (ppo_l0, ppo_gmp, ...)."""


def compress_run_names(records: list[Record]) -> list[str]:
    """The W&B names of the compress runs of these runs."""
    return [f"{r.name}__{output_names(m)['tracker']}" for r in records for m in r.compress]


def wandb_report(
    title: str, description: str, cells: list[tuple[Any, list[Record]]], entity: str, project: str
):
    """The W&B report (not saved): one section per (cell, its runs), with line plots of the training
    runs grouped by variant and a runs table of their compress runs."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    blocks = [wr.P(description)]
    for cell, records in cells:
        train = wr.Runset(
            entity=entity,
            project=project,
            name=f"{cell.title}: training",
            filters=expr.And(
                expr.Metric("Name").isin([r.name for r in records]), expr.Metric("JobType") == "train"
            ),
            groupby=[GROUP_BY],
        )
        panels = [
            wr.LinePlot(
                title=name,
                x="global_step",
                y=list(y),
                groupby=GROUP_BY,
                groupby_aggfunc="mean",
                groupby_rangefunc="stderr",
            )
            for name, y in TRAIN_PANELS
        ]
        compress = wr.Runset(
            entity=entity,
            project=project,
            name=f"{cell.title}: compress",
            filters=expr.And(
                expr.Metric("Name").isin(compress_run_names(records)), expr.Metric("JobType") == "compress"
            ),
            visible_columns=COMPRESS_COLUMNS,
        )
        blocks += [
            wr.H2(cell.title),
            wr.PanelGrid(runsets=[train], panels=panels),
            wr.H3("compression (one compress run per run and method)"),
            wr.PanelGrid(runsets=[compress], panels=[]),
        ]
    return wr.Report(
        project=project, entity=entity, title=title, description=description, blocks=blocks, width="fluid"
    )


def offline_runs(records: list[Record]) -> str:
    """The offline W&B runs of these runs and of their compress runs, as `wandb sync` takes them."""
    dirs = sorted({str(Path(r.run_dir).parent) for r in records}) or ["runs"]
    return " ".join(f"{d}/*/wandb/offline-run-* {d}/*/compress_*/wandb/offline-run-*" for d in dirs)


def publish(title: str, description: str, cells: list[tuple[Any, list[Record]]], command: str) -> str:
    """Save the W&B report; returns its URL. UsageError (one line) without a key or network."""
    records = [r for _, recs in cells for r in recs]
    later = f"upload the offline runs with `wandb sync {offline_runs(records)}`, then run `{command}` again"
    if not has_wandb_key():
        raise UsageError(
            f"no W&B API key (wandb login, or WANDB_API_KEY): local report only; to publish, {later}"
        )
    args = records[0].args if records else {}
    project = args.get("wandb_project") if isinstance(args.get("wandb_project"), str) else "l0rl"
    try:
        import wandb

        entity = args.get("wandb_entity") if isinstance(args.get("wandb_entity"), str) else None
        entity = entity or wandb.Api(timeout=20).default_entity
        report = wandb_report(title, description, cells, entity, project)
        report.save()
    except Exception as e:  # no network, server refused: the local report stands
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UsageError(f"cannot reach W&B ({first}): local report only; to publish, {later}") from None
    return report.url
