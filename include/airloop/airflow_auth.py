"""Airflow's SimpleAuthManager with airloop's teams: Airflow itself refuses what a team's outsider does to its DAGs.

SimpleAuthManager gives a role the same rights on every DAG: a data scientist may trigger, clear, mark or write the
XComs of any model's runs. ``TeamAuthManager`` keeps every answer SimpleAuthManager gives and, for the DAGs of a model
whose spec names a ``team`` (``<model>_etl`` ... ``<model>_batch_score``), also asks airloop: reading them needs a
role on the model (``security.may_see``; none for an outsider when ``security.outside_team_role`` is null), and
anything else (trigger, clear, mark, pause) needs ``data_scientist`` on it (``security.role_on_model``). On every
DAG, only admins may write an XCom: no airloop workflow has a person write one. Admins keep every right. The tasks
check the triggering user too (``security.authorize_run``), for deployments with another auth manager.

Select it with ``AIRFLOW__CORE__AUTH_MANAGER=airloop.airflow_auth.TeamAuthManager`` (the demo and the Helm values
do). It is imported by Airflow's API server only, never while DAG files are parsed.
"""

from __future__ import annotations

import time
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

from airloop import security
from airloop.settings import get_settings
from airloop.spec.schema import STAGES

# How long the DAG -> model map is kept: a spec added or removed shows here as soon as Airflow parses it anyway.
CATALOG_TTL_S = 30.0
_cache: dict[str, Any] = {"at": float("-inf"), "models": {}}


def model_of_dag(dag_id: str | None) -> str | None:
    """The model whose DAG ``dag_id`` is (None for any other DAG), from the valid specs in ``models.folder``."""
    if not dag_id:
        return None
    now = time.monotonic()
    if now - _cache["at"] > CATALOG_TTL_S:
        specs = get_settings().catalog.specs
        _cache["models"] = {spec.dag_id(stage): name for name, spec in specs.items() for stage in STAGES}
        _cache["at"] = now
    return _cache["models"].get(dag_id)


def may_on_dag(dag_id: str | None, user: str, method: str) -> bool:
    """airloop's part of the answer: whether ``user`` may ``method`` (GET: read) the DAG ``dag_id`` of a team's
    model. DAGs of no model, and models of no team, are SimpleAuthManager's alone."""
    model = model_of_dag(dag_id)
    if model is None:
        return True
    settings = get_settings(model)
    if settings.security.team is None:
        return True
    role = security.role_on_model(settings, user)
    if method == "GET":
        return role is not None
    return role is not None and role.at_least(security.Role.DATA_SCIENTIST)


class TeamAuthManager(SimpleAuthManager):
    """SimpleAuthManager, and on a team's model's DAGs only what the user's role on that model allows."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        allowed = super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        if allowed and method != "GET" and access_entity is not None and access_entity.name == "XCOM":
            # No airloop workflow has a person write an XCom; a forged one (an approval, a branch's choice, the
            # evidence an approver reads) is only ever an attack. Admins keep the right, to repair a run by hand.
            allowed = self._is_admin(user)
        if not allowed or details is None:
            return allowed
        try:
            return may_on_dag(details.id, user.get_name(), method)
        except security.SecurityMisconfigured:
            return self._is_admin(user)  # a model of an unknown team: admins only, until it is configured
