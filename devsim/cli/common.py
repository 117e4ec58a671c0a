"""What the command modules share: the exit code and one-line error output for bad
input, and the options of commands that read a run config."""
from __future__ import annotations

import sys

EXIT_BAD_INPUT = 2


def fail(messages) -> int:
    """Print each message as one ``devsim: error:`` line on stderr; the bad-input code."""
    for line in ([messages] if isinstance(messages, str) else messages):
        print(f"devsim: error: {line}", file=sys.stderr)
    return EXIT_BAD_INPUT


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
