"""report: compare runs from their run directories alone, as REPORT.md, report.json and figures, and on
request as a W&B report of exactly those runs.

    l0rl report runs/CartPole-v1__ppo_dense__1__* runs/CartPole-v1__ppo_l0__1__*   # ./l0rl-report/
    l0rl report runs --out my-report --publish        # every run under runs/, and a W&B report

The jobs, one module each: `collect` (read and check what runs wrote, group them into cells and
variants), `tables` (rows, statistics, markdown tables, escaping), `figures` (PNGs), `publish` (the W&B
report), `document` (one report from all of them), `stats` (rliable's estimators), `cli` (the command).
benchmark/report.py reports a benchmark suite through the same code. Needs the `report` extra
(matplotlib, rliable, wandb-workspaces).
"""

from l0rl._one_name import wrong_import_name

if __name__ != "l0rl.report":  # this folder installs as l0rl.report only
    raise wrong_import_name("l0rl.report")
