"""One-off measurements behind the figures in benchmark/results (speed, latency, cost), each run as
`python -m benchmark.measure.<name>`; the suite tooling (run_suite, report, carry) is one level up."""
