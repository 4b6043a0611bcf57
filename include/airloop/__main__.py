"""Command line: ``python -m airloop demo`` (what ``make demo`` runs), ``stop`` (``make stop``), ``models``,
``registry``, ``history`` and ``config-reference``. The commands about one model (``registry``, ``history``) take
``--model <name>`` (``models.default`` without it); a model no valid spec has is refused, naming the known ones."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from airloop.settings import Settings, get_settings

ONE_MODEL_COMMANDS = ("registry", "history")  # the commands that take --model


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
    one_model = argparse.ArgumentParser(add_help=False)
    one_model.add_argument(
        "--model", help="the model (its spec's name, see `python -m airloop models`); default: models.default"
    )
    demo = commands.add_parser("demo", help="start Airflow standalone, run the loop once, print URLs")
    demo.add_argument("--exit", action="store_true", help="stop the services after the loop instead of waiting")
    commands.add_parser("stop", help="stop the demo's services from another terminal, even if the demo was killed")
    models = commands.add_parser(
        "models", help="the model specs: each valid one with its DAG ids, each broken file with its errors (exit 1)"
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of text")
    registry = commands.add_parser(
        "registry",
        parents=[one_model],
        help="show a model's registry, promote its challenger, roll back, change its live routing",
    )
    registry.add_argument("action", choices=["show", "promote", "rollback", "route"])
    registry.add_argument("--actor", default=f"cli:{getpass.getuser()}", help="who to record in the audit tags")
    registry.add_argument(
        "--weights", type=_weights, help="route: variant weights, e.g. champion=90,challenger=10 (all replicas)"
    )
    registry.add_argument("--mode", choices=["ab", "shadow"], help="route: ab or shadow")
    registry.add_argument("--experiment", help="route: a new experiment id (reshuffles sticky assignments)")
    past = commands.add_parser(
        "history",
        parents=[one_model],
        help="a model's decision history, newest first; with --at: what served then and the decisions by then",
    )
    past.add_argument("--at", help="ISO 8601 time, e.g. 2026-11-25T10:00:00Z")
    past.add_argument("--kind", help="only decisions of this kind (drift_verdict, promotion, rollback, ...)")
    past.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    past.add_argument("--json", action="store_true", help="print JSON instead of a table")
    reference = commands.add_parser("config-reference", help="the Markdown reference of every setting")
    reference.add_argument("--output", type=Path, help="write it to this file instead of printing it")
    args = parser.parse_args(argv)
    # The commands print what a person needs; library chatter (GE, MLflow, httpx) stays below WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from airloop.cli import demo as demo_module

        return demo_module.main(get_settings(), keep_running=not args.exit)
    if args.command == "stop":
        from airloop.cli import demo as demo_module

        return demo_module.stop(get_settings())
    if args.command == "models":
        from airloop.cli import models as models_module
        from airloop.spec import SpecError

        try:
            return models_module.main(args.json)
        except SpecError as error:  # AIRLOOP_MODEL names a model no valid spec has
            print(f"error: {error}", file=sys.stderr)
            return 2
    if args.command in ONE_MODEL_COMMANDS:
        from airloop.cli.models import settings_of
        from airloop.spec import SpecError

        try:
            settings = settings_of(args.model)
        except SpecError as error:  # an unknown or broken model: the message names the known ones
            print(f"error: {error}", file=sys.stderr)
            return 2
        return _registry(settings, args) if args.command == "registry" else _history(settings, args)
    if args.command == "config-reference":
        from airloop.cli import config_reference

        return config_reference.main(args.output)
    return 2


def _registry(settings: Settings, args: argparse.Namespace) -> int:
    from airloop.errors import RegistryActionError
    from airloop.operations import run_action

    routing = {"weights": args.weights, "mode": args.mode, "experiment": args.experiment}
    try:
        result = run_action(settings, args.action, args.actor, routing)
    except RegistryActionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(result["table"])
    return 0


def _history(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from airloop import history

    try:
        rows = history.rows(settings, at=args.at, kind=args.kind, limit=args.limit)
        served = history.state_at(settings, args.at) if args.at else None
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        out = {"at": args.at, "state": served.to_dict() if served else None}
        out["decisions"] = [r.__dict__ for r in rows]
        print(json.dumps(out, indent=2, default=lambda value: value.isoformat()))
        return 0
    if args.at:
        if served is None:
            print(f"at {args.at}: nothing recorded yet")
        else:
            aliases = ", ".join(f"{k}=v{v}" for k, v in sorted(served.aliases.items())) or "no aliases"
            print(f"at {served.at}: {aliases}; routing {json.dumps(served.routing, sort_keys=True)}")
            by = f"#{served.decision_id} {served.decision_kind}, {served.decided_by}, {served.decided_at}"
            print(f"  (set by {by})\n")
    print(history.format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
