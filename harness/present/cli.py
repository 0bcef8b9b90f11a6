"""The ``lossbench`` command line. Every command exits with one code of one table
(EXIT_CODES, in the README); whatever goes wrong ends in one line on stderr,
never a traceback. Each command is one Command (its arguments and what it
runs), registered in COMMANDS."""
from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence
from typing import NoReturn

from harness.measure.inputs import InputError
from harness.present.commands import catalog, evaluate, stored, sweeping
from harness.present.options import Command, EnvironmentFault, UsageError

COMMANDS: tuple[Command, ...] = (*catalog.COMMANDS, *evaluate.COMMANDS, *sweeping.COMMANDS, *stored.COMMANDS)

EXIT_CODES = {
    0: "success",
    1: "the measured thing failed: a framework raised (eval), nothing qualifies (recommend), "
       "something got worse (compare)",
    2: "bad input or usage, an unusable results store",
    3: "the environment failed: disk full, read-only file system, permission denied, "
       "a worker killed from outside (the OS's reason and the path)",
    70: "an internal error of lossbench (a bug: LOSSBENCH_DEBUG=1 shows the traceback)",
    130: "interrupted (Ctrl-C)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lossbench", description="Accuracy of deep-learning losses against a certified arbitrary-precision reference.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.add_arguments(subparsers.add_parser(command.name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        return next(c for c in COMMANDS if c.name == args.command).run(args)
    except (UsageError, InputError) as exc:
        print(f"lossbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lossbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if _stdout_closed():  # output piped into head and the like
            sys.stderr.close()
            return 0
        return _internal(exc, "a worker's pipe, not the output")
    except EnvironmentFault as exc:
        print(f"lossbench: error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # the machine refused: disk full, read-only, permission
        where = f": {exc.filename}" if exc.filename else ""
        print(f"lossbench: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 3
    except Exception as exc:  # noqa: BLE001  a bug must still not print a traceback at users
        return _internal(exc)


def _internal(exc: BaseException, note: str = "") -> int:
    if os.environ.get("LOSSBENCH_DEBUG"):
        raise exc
    print(f"lossbench: internal error: {type(exc).__name__}: {exc} ({note + '; ' if note else ''}"
          "set LOSSBENCH_DEBUG=1 for a traceback)", file=sys.stderr)
    return 70


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (only that broken
    pipe is the user's doing): the write end of such a pipe polls as an error."""
    try:
        descriptor = sys.stdout.fileno()
    except (ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    if not any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)  # no second error when Python flushes at exit
    return True


if __name__ == "__main__":
    sys.exit(main())
