"""l0rl: sparse deep-RL policies trained with L0 (hard-concrete) gates, then compressed.

Every part lives under this one import name:
    from l0rl import l0                          # gates, penalty, stats, harden, scheduler
    from l0rl.envs import make_vector_env        # every supported environment family
    from l0rl.compress import compress_run       # harden -> shrink -> low rank -> re-evaluate
    policy = l0rl.load_policy("runs/<run>")      # the deployable policy as a plain torch module
"""

__version__ = "0.2.0"
