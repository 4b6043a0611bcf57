"""Command line: ``python -m airloop demo`` (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from airloop.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="airloop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="start Airflow standalone, run the loop once, print URLs")
    demo.add_argument("--exit", action="store_true", help="stop the services after the loop instead of waiting")
    registry = commands.add_parser("registry", help="show the model registry, promote the challenger, roll back")
    registry.add_argument("action", choices=["show", "promote", "rollback"])
    registry.add_argument("--actor", default=f"cli:{getpass.getuser()}", help="who to record in the audit tags")
    args = parser.parse_args(argv)
    # The commands print what a person needs; library chatter (GE, MLflow, httpx) stays below WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from airloop import demo as demo_module

        return demo_module.main(get_settings(), keep_running=not args.exit)
    if args.command == "registry":
        from airloop.errors import RegistryActionError
        from airloop.registry.cli import run_action

        try:
            result = run_action(get_settings(), args.action, args.actor)
        except RegistryActionError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(result["table"])
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
