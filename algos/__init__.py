"""l0rl.algos: the single-file algorithms (ppo_l0, a2c_l0, dqn_l0, sac_l0); run them as scripts or copy one."""

if __name__ != "l0rl.algos":  # one file, one import name: this folder installs as l0rl.algos
    raise ImportError(
        "import this package as l0rl.algos (from l0rl import algos); run 'make setup' or pip install -e ."
    )
