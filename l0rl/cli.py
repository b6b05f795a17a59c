"""`l0rl <verb>`: the installed commands behind one entry point.

    l0rl report RUN_DIR...        compare runs: REPORT.md + figures (--publish: a W&B report)
    l0rl play RUN                 watch a saved policy play: per-episode return and progress
    l0rl evaluate POLICY...       many episodes of saved policies, as compress plays them
    l0rl compress RUN_DIR         harden -> shrink -> low rank -> re-evaluate (= python -m l0rl.compress)

`l0rl <verb> --help` describes each. Training stays a file you run and may copy:
`python algos/ppo_l0.py` (CleanRL's shape).
"""

import importlib
import sys

from l0rl.runkit.cli import EXIT_USAGE, run_cli

VERBS = {
    "report": ("l0rl.report.cli", "compare runs: REPORT.md + figures (--publish: a W&B report)"),
    "play": ("l0rl.play", "watch a saved policy play: per-episode return and progress"),
    "evaluate": ("l0rl.evaluate", "many episodes of saved policies, as compress plays them"),
    "compress": ("l0rl.compress.__main__", "harden -> shrink -> low rank -> re-evaluate a run's policy"),
}


def usage() -> str:
    lines = ["usage: l0rl <verb> [options]   (l0rl <verb> --help for each)", ""]
    return "\n".join(lines + [f"  {verb:<9} {text}" for verb, (_, text) in VERBS.items()])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else EXIT_USAGE
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"l0rl: error: unknown verb {verb!r}; use one of {', '.join(VERBS)}", file=sys.stderr)
        return EXIT_USAGE
    prog = f"l0rl {verb}"
    # imported here, inside run_cli: a missing optional package (the report's) is one line
    run_cli(lambda: importlib.import_module(VERBS[verb][0]).main(rest, prog), prog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
