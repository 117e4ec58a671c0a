"""The ``devsim`` command: one subcommand per module of this package.

Each command module offers ``register(subparsers)``, which adds its subcommands with
their handlers. Handlers are plain functions returning an exit code, so tests call them
directly. Every failure prints one line per problem on stderr, without a traceback,
and exits with its status:

- 0: done;
- 2: bad input (a config error, a data file that fails its checks, a missing file, a
  file that is not a trace, a trace already at the output path, an output folder that
  cannot be written, a plugin that fails to load); nothing was trained or written over;
- 3: the run diverged (past ``train.divergence.max_nonfinite`` non-finite update
  windows); its trace, under the final name, keeps every row before the stop;
- 4: writing the trace or a checkpoint failed during the run (a full disk); the
  ``.partial`` trace keeps every row up to its last flush;
- 128 + N: stopped by signal N (130 for SIGINT, 143 for SIGTERM) after flushing the
  trace and, where checkpoints are on, writing one for ``--resume``.

Warnings (data that will probably train badly) print as one ``devsim: warning:`` line.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings

from devsim.cli import analysis, docs, evaluate, presets, runs, traces, tune
from devsim.cli.common import (EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_SIGNAL_BASE,
                               EXIT_WRITE_FAILED, fail)

COMMANDS = (runs, presets, traces, evaluate, tune, analysis, docs)
"""Command modules, in the order ``devsim --help`` lists them."""

__all__ = ["main", "parser", "EXIT_BAD_INPUT", "EXIT_DIVERGED", "EXIT_WRITE_FAILED"]


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
    from devsim.registry import PluginError
    from devsim.stopping import Diverged, Interrupted
    from devsim.trace import OutputError, TraceError, WriteError
    args = parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            return args.handler(args)
    except ConfigError as exc:
        return fail(exc.messages)
    except PluginError as exc:
        return fail(str(exc))
    except (TraceError, OutputError) as exc:
        return fail(str(exc))
    except Diverged as exc:
        return fail(exc.message, EXIT_DIVERGED)
    except WriteError as exc:
        return fail(str(exc), EXIT_WRITE_FAILED)
    except BrokenPipeError:  # the reader left (`devsim inspect t.h5 | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_SIGNAL_BASE + signal.SIGPIPE
    except OSError as exc:
        return fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    except Interrupted as exc:
        return fail(exc.message, EXIT_SIGNAL_BASE + exc.signum)
    except KeyboardInterrupt:
        return fail("interrupted; the partial trace keeps every flushed row",
                    EXIT_SIGNAL_BASE + signal.SIGINT)


def _warning_line(message, category, filename, lineno, file=None, line=None):
    print(f"devsim: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
