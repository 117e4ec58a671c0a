"""What the command modules share: the exit codes and one-line error output, and the
options of commands that read a run config."""
from __future__ import annotations

import sys

EXIT_BAD_INPUT = 2
"""A config, data file, trace or output path that cannot be used; nothing was trained."""
EXIT_DIVERGED = 3
"""The run stopped as diverged; its trace keeps every row before the stop."""
EXIT_WRITE_FAILED = 4
"""Writing the trace or a checkpoint failed during the run (a full disk, ...)."""
EXIT_SIGNAL_BASE = 128
"""A run stopped by signal N exits with 128 + N (SIGINT 130, SIGTERM 143)."""


def fail(messages, code: int = EXIT_BAD_INPUT) -> int:
    """Print each message as one ``devsim: error:`` line on stderr; return ``code``."""
    for line in ([messages] if isinstance(messages, str) else messages):
        print(f"devsim: error: {line}", file=sys.stderr)
    return code


def add_config_arguments(sp) -> None:
    """The config file, ``--set`` overrides and ``--seed`` of a command that runs one."""
    sp.add_argument("config", help="run config (YAML)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config value, e.g. train.optimizer.lr=0.5 (repeatable)")
    sp.add_argument("--seed", type=int, help="override the config's seed")


def load_run_config(args):
    """The validated run config the arguments name, with their overrides and seed."""
    from devsim.runner import load_config
    config = load_config(args.config, args.set or ())
    if getattr(args, "seed", None) is not None:
        config = config.replace(seed=args.seed)
    return config
