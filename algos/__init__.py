"""l0rl.algos: the single-file algorithms (ppo_l0, a2c_l0, dqn_l0, sac_l0); run them as scripts or copy one."""

from l0rl._one_name import wrong_import_name

if __name__ != "l0rl.algos":  # this folder installs as l0rl.algos only
    raise wrong_import_name("l0rl.algos")
