"""``airflow standalone`` with airloop's auth manager: ``python -m airloop.cli.airflow_standalone``.

Airflow's standalone command (scheduler, DAG processor, API server and triggerer under one parent) replaces any
``[core] auth_manager`` with SimpleAuthManager. airloop's ``TeamAuthManager`` is SimpleAuthManager plus the teams'
rights (``airloop.airflow_auth``): this keeps the configured auth manager when it is SimpleAuthManager or a subclass
of it, and is Airflow's own command in every other respect. The demo and the integration suite start Airflow this way.
"""

from __future__ import annotations

import os

SIMPLE = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def keeps(classpath: str | None) -> bool:
    """Whether ``classpath`` names SimpleAuthManager or a subclass of it (what standalone can run with)."""
    if not classpath:
        return False
    import importlib

    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    module, _, name = classpath.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(found, type) and issubclass(found, SimpleAuthManager)


def main() -> None:
    from airflow.cli.commands.standalone_command import StandaloneCommand
    from airflow.configuration import write_default_airflow_configuration_if_needed

    # As `airflow` itself does before any command: write airflow.cfg once (with its JWT secret) before the components
    # start; otherwise each one writes its own and rejects the tokens the others sign.
    write_default_airflow_configuration_if_needed()

    wanted = os.environ.get("AIRFLOW__CORE__AUTH_MANAGER")

    class Standalone(StandaloneCommand):
        def calculate_env(self) -> dict[str, str]:
            env = super().calculate_env()
            if wanted and wanted != SIMPLE and keeps(wanted):
                self.print_output("standalone", f"Keeping auth manager {wanted} (a SimpleAuthManager)")
                env["AIRFLOW__CORE__AUTH_MANAGER"] = os.environ["AIRFLOW__CORE__AUTH_MANAGER"] = wanted
            return env

    Standalone().run()


if __name__ == "__main__":
    main()
