"""The ``vm-expiry`` console script.

Each command group lives in its own module and registers itself here; errors a user can meet
end as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from vm_expiry.errors import VmExpiryError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command group registered."""
    from vm_expiry import admin_commands, config_reference, demo
    from vm_expiry import commands as workflow_commands
    from vm_expiry.lab import cli as lab_cli

    parser = argparse.ArgumentParser(
        prog="vm-expiry", description="Automatic expiry of forgotten OpenStack servers."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (
        workflow_commands.register,
        admin_commands.register,
        config_reference.register,
        demo.register,
        lab_cli.register,
    ):
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status."""
    # Client libraries log recoverable hiccups (version discovery) as warnings; the command
    # reports what matters itself.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except VmExpiryError as error:
        print(f"vm-expiry: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vm-expiry: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
