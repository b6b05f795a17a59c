"""`python -m benchmark.evaluate` is `l0rl evaluate` (l0rl/evaluate.py), kept for the commands the
results' notes quote."""

from l0rl.evaluate import main
from l0rl.runkit import run_cli

PROG = "python -m benchmark.evaluate"

if __name__ == "__main__":
    run_cli(lambda: main(None, PROG), PROG)
