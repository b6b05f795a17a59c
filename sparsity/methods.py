"""The sparsity-method interface, its three methods (L0, GMP, Dense) and the registry --sparsity reads.

A method works on named groups of networks: a group is what an algorithm penalises or steps on its
own (PPO's "actor" and "critic", SAC's "actor" and its two critics as one "critic", DQN's
"q_network"). The first group is the deployable policy's, whose figures the run logs itself.
"""

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from l0rl import gmp, l0
from l0rl.errors import UsageError

Networks = nn.Module | Sequence[nn.Module]


def make_scheduler(args: Any, lam: float) -> l0.SparsityMapScheduler:
    """The sparsity-map scheduler of one gated group from the shared L0 options; impossible settings
    (e.g. --l0-ramp-end before --l0-warmup) are a UsageError."""
    try:
        return l0.SparsityMapScheduler(
            total_steps=args.total_timesteps,
            mode=args.l0_schedule,
            lam=lam,
            warmup=args.l0_warmup,
            ramp_end=args.l0_ramp_end,
            target_sparsity=args.l0_target_sparsity,
            target_at=args.l0_target_at,
            dual_lr=args.l0_dual_lr,
            # hold belongs to the target schedule: DQN's default (on) leaves its other schedules without
            # one; an explicit --l0-target-hold with another schedule is refused by L0.check_args
            hold=args.l0_target_hold and args.l0_schedule == "target",
        )
    except ValueError as e:
        raise UsageError(f"--l0-schedule {args.l0_schedule}: {e}") from None


class SparsityMethod:
    """What a training loop calls, whatever the method. Every hook of this base class does nothing
    (the dense behaviour): a method overrides the ones it needs.

    args: the run's arguments (the method reads its own options, e.g. --gmp-target); nets: group name
    -> network or list of networks; lambdas: group name -> L0 strength (used by L0 only)."""

    kind = "none"
    """how the networks carry the sparsity: "l0" gates, "gmp" masks, "none" (l0rl.policy's record kinds)"""
    prefix = ""
    """the prefix of the method's own options (l0_, gmp_): a run of another method refuses them"""
    label = ""
    """how reports name the method's runs ("" : its --sparsity name)"""

    def __init__(self, args: Any, nets: dict[str, Networks], lambdas: dict[str, float]):
        self.groups = {g: [n] if isinstance(n, nn.Module) else list(n) for g, n in nets.items()}

    @classmethod
    def check_args(cls, args: Any, given: dict[str, Any]) -> None:
        """Refuse (UsageError) impossible values of the method's own options, before anything is built;
        `given`: the options the command line set (not defaults)."""

    def module(self, group: str) -> nn.Module:
        """The group's networks as one module (for statistics over all of them)."""
        nets = self.groups[group]
        return nets[0] if len(nets) == 1 else nn.ModuleList(nets)

    def schedule(self, global_step: int, measure: bool = False) -> dict[str, float]:
        """Advance the method's schedule to this step (before the losses that use it). Returns the
        sparsity it measured per group (every group's with measure=True), for an algorithm's own rules."""
        return {}

    def penalty(self, *groups: str) -> torch.Tensor:
        """The term to add to the loss for these groups (all by default), its strength included."""
        return torch.zeros(())

    def after_step(self, global_step: int, *groups: str) -> None:
        """Call after an optimizer step. With groups: a step that moved only those groups' networks,
        inside a learning update (SAC's critic and actor steps); without: the step that completes a
        learning update of every network, which is what an update-counting schedule counts."""

    def log_dict(self) -> dict[str, float]:
        """Figures to log: the first group's under the method's prefix (l0/, gmp/), each other group's
        under <prefix><group>/ (the policy's own sparsity figures Run.log adds itself)."""
        return {}

    def state_dict(self) -> dict[str, dict]:
        """Plain data for the checkpoint's "schedulers" entry: one state per key."""
        return {}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        """Restore what state_dict returned."""


class Dense(SparsityMethod):
    """--sparsity none: the dense baseline, the null object (the base class's hooks do nothing)."""

    label = "dense"


class L0(SparsityMethod):
    """--sparsity l0: hard-concrete gates on the networks of every group that has a lambda (a group
    without one stays dense), one sparsity-map scheduler per gated group, and the penalty lambda x the
    expected share of open gated weights, summed over the group's networks."""

    kind, prefix, label = "l0", "l0_", "L0"

    @classmethod
    def check_args(cls, args: Any, given: dict[str, Any]) -> None:
        if "l0_target_hold" in given and args.l0_target_hold and args.l0_schedule != "target":
            raise UsageError(
                f"--l0-schedule {args.l0_schedule}: hold applies to the target mode only; "
                "drop --l0-target-hold or pass --l0-schedule target"
            )
        if not args.l0_lr > 0:
            raise UsageError(f"--l0-lr must be > 0, got {args.l0_lr}")
        if not 0.0 < args.l0_drop_rate < 1.0:
            raise UsageError(f"--l0-drop-rate must be in (0, 1), got {args.l0_drop_rate}")

    def __init__(self, args: Any, nets: dict[str, Networks], lambdas: dict[str, float]):
        super().__init__(args, nets, lambdas)
        if unknown := set(lambdas) - set(self.groups):
            raise ValueError(f"lambdas for networks that are not given: {sorted(unknown)}")
        self.gated = {g: nets for g, nets in self.groups.items() if g in lambdas}
        self.schedulers = {g: make_scheduler(args, lambdas[g]) for g in self.gated}
        for networks in self.gated.values():
            for net in networks:  # output layers per weight: a unit gate would delete an action
                l0.sparsify(net, args.l0_granularity, args.l0_drop_rate, output_granularity="weight")

    def schedule(self, global_step: int, measure: bool = False) -> dict[str, float]:
        measured = {}
        for g, sched in self.schedulers.items():  # the target mode's controller reads the sparsity reached
            if measure or sched.mode == "target":
                measured[g] = l0.stats(self.module(g))["l0/sparsity"]
            sched.step(global_step, measured.get(g))
        return measured

    def penalty(self, *groups: str) -> torch.Tensor:
        if not (gated := [g for g in groups or self.schedulers if g in self.schedulers]):
            return torch.zeros(())  # no gated group among these: an ungated one adds nothing
        return sum(self.schedulers[g].lam * sum(l0.penalty(net) for net in self.gated[g]) for g in gated)

    def after_step(self, global_step: int, *groups: str) -> None:
        for g in groups or self.gated:  # log_alpha stays where the gate is not yet saturated
            for net in self.gated.get(g, ()):
                l0.clamp_log_alpha_(net)

    def log_dict(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, (g, sched) in enumerate(self.schedulers.items()):
            out |= sched.log_dict("l0/" if i == 0 else f"l0/{g}/")
            if i > 0:
                out |= l0.stats(self.module(g), f"l0/{g}/")
        return out

    def state_dict(self) -> dict[str, dict]:
        return {g: sched.state_dict() for g, sched in self.schedulers.items()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        for g, sched in self.schedulers.items():
            sched.load_state_dict(state[g])


class GMP(SparsityMethod):
    """--sparsity gmp: magnitude masks on every network (each pruned to --gmp-target on its own), the
    masks recomputed every --gmp-every learning updates along the cubic schedule; no penalty."""

    kind, prefix, label = "gmp", "gmp_", "GMP"

    @classmethod
    def check_args(cls, args: Any, given: dict[str, Any]) -> None:
        if not 0.0 < args.gmp_target < 1.0:
            raise UsageError(f"--gmp-target must be in (0, 1), got {args.gmp_target}")
        if not 0.0 <= args.gmp_start < args.gmp_end <= 1.0:
            raise UsageError(
                f"GMP needs 0 <= --gmp-start < --gmp-end <= 1, got {args.gmp_start}, {args.gmp_end}"
            )

    def __init__(self, args: Any, nets: dict[str, Networks], lambdas: dict[str, float]):
        super().__init__(args, nets, lambdas)
        models = {
            f"{g}{i if len(nets) > 1 else ''}": gmp.attach(net)
            for g, nets in self.groups.items()
            for i, net in enumerate(nets)
        }
        self.pruner = gmp.GradualMagnitudePruner(
            models, args.gmp_target, args.total_timesteps, args.gmp_start, args.gmp_end, args.gmp_every
        )

    def after_step(self, global_step: int, *groups: str) -> None:
        if not groups:  # one learning update of every network
            self.pruner.step(global_step)

    def log_dict(self) -> dict[str, float]:
        out = self.pruner.log_dict()
        for g in list(self.groups)[1:]:
            out |= gmp.stats(self.module(g), f"gmp/{g}/")
        return out

    def state_dict(self) -> dict[str, dict]:
        return {"gmp": self.pruner.state_dict()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        self.pruner.load_state_dict(state["gmp"])


METHODS: dict[str, type[SparsityMethod]] = {"l0": L0, "gmp": GMP, "none": Dense}
"""--sparsity's choices: a new method is one SparsityMethod subclass and one entry here."""


def make_sparsity(args: Any, nets: dict[str, Networks], lambdas: dict[str, float]) -> SparsityMethod:
    """The method --sparsity names, made sparse (gates or masks attached) on `nets` at once."""
    return METHODS[args.sparsity](args, nets, lambdas)


def method_label(name: str, level: float | None = None) -> str:
    """How reports name the runs of --sparsity `name` (L0, GMP, dense), with the sparsity `level` a
    variant aims at where a suite sweeps several ("L0 0.90")."""
    return (METHODS[name].label or name) + (f" {level:.2f}" if level is not None else "")


def sparsity_stats(policy: nn.Module, method: str) -> dict[str, float]:
    """The policy's sparsity figures under its kind's prefix (l0/ or gmp/) plus `sparsity`, the same
    key for every method (0 for a dense policy)."""
    kind = METHODS[method].kind
    if kind == "l0":
        out = l0.stats(policy, "l0/")
        return {**out, "sparsity": out["l0/sparsity"]}
    if kind == "gmp":
        out = gmp.stats(policy, "gmp/")
        return {**out, "sparsity": out["gmp/sparsity"]}
    return {"sparsity": 0.0}
