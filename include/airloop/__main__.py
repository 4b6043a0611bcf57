"""Command line: ``python -m airloop demo`` (what ``make demo`` runs), ``stop`` (``make stop``) and ``registry``."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from airloop.settings import get_settings


def _weights(text: str) -> dict[str, float]:
    """``champion=90,challenger=10`` -> {"champion": 90.0, "challenger": 10.0}."""
    try:
        return {name.strip(): float(value) for name, value in (part.split("=") for part in text.split(","))}
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected variant=weight[,variant=weight], got {text!r}") from error


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="airloop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="start Airflow standalone, run the loop once, print URLs")
    demo.add_argument("--exit", action="store_true", help="stop the services after the loop instead of waiting")
    commands.add_parser("stop", help="stop the demo's services from another terminal, even if the demo was killed")
    registry = commands.add_parser(
        "registry", help="show the model registry, promote the challenger, roll back, change the live routing"
    )
    registry.add_argument("action", choices=["show", "promote", "rollback", "route"])
    registry.add_argument("--actor", default=f"cli:{getpass.getuser()}", help="who to record in the audit tags")
    registry.add_argument(
        "--weights", type=_weights, help="route: variant weights, e.g. champion=90,challenger=10 (all replicas)"
    )
    registry.add_argument("--mode", choices=["ab", "shadow"], help="route: ab or shadow")
    registry.add_argument("--experiment", help="route: a new experiment id (reshuffles sticky assignments)")
    args = parser.parse_args(argv)
    # The commands print what a person needs; library chatter (GE, MLflow, httpx) stays below WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from airloop.cli import demo as demo_module

        return demo_module.main(get_settings(), keep_running=not args.exit)
    if args.command == "stop":
        from airloop.cli import demo as demo_module

        return demo_module.stop(get_settings())
    if args.command == "registry":
        from airloop.errors import RegistryActionError
        from airloop.registry.actions import run_action

        routing = {"weights": args.weights, "mode": args.mode, "experiment": args.experiment}
        try:
            result = run_action(get_settings(), args.action, args.actor, routing)
        except RegistryActionError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(result["table"])
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
