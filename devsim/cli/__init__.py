"""The ``devsim`` command: one subcommand per module of this package.

Each command module offers ``register(subparsers)``, which adds its subcommands with
their handlers. Handlers are plain functions returning an exit code, so tests call them
directly. Bad input (a config error, a missing file, a file that is not a trace, a
plugin that fails to load) prints one line per problem on stderr and exits with
status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import sys

from devsim.cli import analysis, docs, runs, traces, tune
from devsim.cli.common import EXIT_BAD_INPUT, fail

COMMANDS = (runs, traces, tune, analysis, docs)
"""Command modules, in the order ``devsim --help`` lists them."""

__all__ = ["main", "parser", "EXIT_BAD_INPUT"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="devsim", description="Simulate noisy neural-network hardware and train it "
                                   "from observed costs.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv=None) -> int:
    from devsim.config import ConfigError
    from devsim.trace import TraceError
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        return fail(exc.messages)
    except TraceError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        return fail("interrupted; the partial trace keeps every flushed row")


if __name__ == "__main__":
    sys.exit(main())
