"""The role contract: what each airloop role is in Airflow (judged by Airflow's own SimpleAuthManager), who answers a
promotion's approval, which registry actions each role may run, and which scopes each serving key grants."""

from __future__ import annotations

import pytest

from airloop import security
from airloop.security import NotAuthorized, Role, Scope, SecurityMisconfigured
from airloop.settings import SecuritySettings, Settings

TEAM = {"viewer": "viewer", "scientist": "data_scientist", "engineer": "ml_engineer", "admin": "admin"}


def make_settings(users: dict[str, str] | None = None, unattributed_role: str | None = None, **sections) -> Settings:
    """Settings with exactly ``users`` (init values would be merged into the config file's users, not replace them)."""
    base = Settings(**sections)
    section = SecuritySettings(users=TEAM if users is None else users, unattributed_role=unattributed_role)
    return base.model_copy(update={"security": section})


@pytest.fixture
def simple_auth_manager(monkeypatch):
    """Airflow's SimpleAuthManager configured with airloop's users, the way the demo's Airflow is."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", security.airflow_users(make_settings()))
    manager = SimpleAuthManager()
    return manager, {user.username: user for user in manager.get_users()}


def test_airflow_users_lists_every_user_with_its_simple_auth_manager_role_and_no_password():
    assert security.airflow_users(make_settings()) == "viewer:viewer,scientist:user,engineer:op,admin:admin"


def test_roles_keep_the_order_of_airflows_roles():
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManagerRole

    orders = [SimpleAuthManagerRole[security.AIRFLOW_ROLES[role].upper()].order for role in Role]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)


def test_in_airflow_a_viewer_only_sees_and_a_data_scientist_may_trigger(simple_auth_manager):
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager, users = simple_auth_manager
    etl = DagDetails(id="readmission_etl")

    def may(user: str, method: str) -> bool:
        runs = DagAccessEntity.RUN
        return manager.is_authorized_dag(method=method, access_entity=runs, details=etl, user=users[user])

    assert {name: user.role for name, user in users.items()} == {
        "viewer": "viewer", "scientist": "user", "engineer": "op", "admin": "admin"
    }  # fmt: skip
    assert all(may(name, "GET") for name in TEAM)
    assert [name for name in TEAM if may(name, "POST")] == ["scientist", "engineer", "admin"]


def test_only_the_approvers_may_answer_an_approval_in_airflow(simple_auth_manager):
    manager, users = simple_auth_manager
    assigned = {user["id"] for user in security.approvers(make_settings())}

    answering = [name for name in TEAM if manager.is_authorized_hitl_task(assigned_users=assigned, user=users[name])]

    assert answering == ["engineer", "admin"]


def test_approvers_are_the_approver_role_and_every_role_above_it():
    settings = make_settings({**TEAM, "carol": "ml_engineer", "root": "admin"})

    assert security.approvers(settings) == [
        {"id": "engineer", "name": "engineer"},
        {"id": "admin", "name": "admin"},
        {"id": "carol", "name": "carol"},
        {"id": "root", "name": "root"},
    ]
    admins_only = make_settings(loop={"approver_role": "admin"})
    assert [a["id"] for a in security.approvers(admins_only)] == ["admin"]


@pytest.mark.parametrize(
    ("users", "approver_role", "message"),
    [
        ({"viewer": "viewer", "scientist": "data_scientist"}, "ml_engineer", "nobody could approve"),
        (TEAM, "viewer", "viewers cannot answer"),
        (TEAM, "owner", "'owner' is not a role"),
    ],
    ids=["nobody-holds-it", "viewer", "unknown-role"],
)
def test_an_approval_nobody_may_answer_is_refused_when_the_dag_is_parsed(users, approver_role, message):
    with pytest.raises(SecurityMisconfigured, match=message):
        security.approvers(make_settings(users, loop={"approver_role": approver_role}))


@pytest.mark.parametrize(
    ("user", "allowed"),
    [
        ("viewer", {"show"}),
        ("scientist", {"show"}),
        ("engineer", {"show", "promote", "rollback"}),
        ("admin", {"show", "promote", "rollback", "route"}),
        ("mallory", {"show"}),
        (None, {"show"}),
        ("dag_test", {"show"}),
    ],
)
def test_registry_actions_each_role_may_run(user, allowed):
    settings = make_settings()
    granted = set()
    for action in security.REGISTRY_ACTION_ROLES:
        try:
            security.authorize_registry_action(settings, action, user)
            granted.add(action)
        except NotAuthorized:
            pass
    assert granted == allowed


def test_a_refused_registry_action_names_the_user_their_role_and_the_role_needed():
    settings = make_settings()

    with pytest.raises(NotAuthorized) as routed:
        security.authorize_registry_action(settings, "route", "scientist")
    with pytest.raises(NotAuthorized) as promoted:
        security.authorize_registry_action(settings, "promote", "mallory")
    with pytest.raises(NotAuthorized) as anonymous:
        security.authorize_registry_action(settings, "rollback", None)

    assert str(routed.value) == "user 'scientist' may not route: it has role data_scientist; route needs admin"
    assert str(promoted.value) == (
        "user 'mallory' may not promote: it has no role (not in security.users); promote needs ml_engineer or admin"
    )
    assert str(anonymous.value) == (
        "a run no signed-in user triggered may not rollback: it has no role (security.unattributed_role: null); "
        "rollback needs ml_engineer or admin"
    )


def test_a_run_without_a_signed_in_user_has_the_unattributed_role():
    settings = make_settings(unattributed_role="ml_engineer")

    assert security.authorize_registry_action(settings, "rollback", "dag_test") is Role.ML_ENGINEER
    assert security.authorize_registry_action(settings, "promote", None) is Role.ML_ENGINEER
    with pytest.raises(NotAuthorized, match=r"\(dag\.test\(\)\) may not route: it has role ml_engineer"):
        security.authorize_registry_action(settings, "route", "dag_test")
    # A configured user called dag_test is judged by its own role, not as an unattributed run.
    named = make_settings({**TEAM, "dag_test": "admin"})
    assert security.authorize_registry_action(named, "route", "dag_test") is Role.ADMIN


def test_registry_action_roles_cover_exactly_the_registry_actions():
    from airloop.operations import ACTIONS

    assert tuple(security.REGISTRY_ACTION_ROLES) == ACTIONS
    with pytest.raises(ValueError, match="unknown registry action"):
        security.authorize_registry_action(make_settings(), "delete", "admin")


def test_a_promotion_needs_an_approve_answered_by_an_approver():
    settings = make_settings(loop={"require_approval": True})
    answer = {"chosen_options": ["Approve"], "responded_by_user": {"id": "engineer", "name": "engineer"}}

    assert security.approved_by(settings, answer) == "engineer"
    assert security.approved_by(make_settings(loop={"require_approval": False}), {}) is None
    with pytest.raises(NotAuthorized, match="no answer: was it marked successful by hand"):
        security.approved_by(settings, {})
    with pytest.raises(NotAuthorized, match="by 'scientist'"):
        security.approved_by(settings, {**answer, "responded_by_user": {"id": "scientist", "name": "scientist"}})
    with pytest.raises(NotAuthorized, match=r"\['Reject'\]"):
        security.approved_by(settings, {**answer, "chosen_options": ["Reject"]})


def test_serving_keys_grant_their_scopes_and_an_unknown_or_unset_key_none():
    settings = make_settings(
        serving={"api_key": "admin-key", "reload_key": "reload-key", "predict_key": "p-key", "feedback_key": "f-key"}
    )

    assert security.key_scopes(settings, b"admin-key") == set(Scope)
    assert security.key_scopes(settings, b"reload-key") == {Scope.RELOAD}
    assert security.key_scopes(settings, b"p-key") == {Scope.PREDICT}
    assert security.key_scopes(settings, b"f-key") == {Scope.FEEDBACK}
    assert security.key_source(settings, b"f-key") == "feedback_key" and security.key_source(settings, None) == "open"
    assert security.keys_granting(Scope.FEEDBACK) == ["serving.api_key", "serving.feedback_key"]
    assert security.key_scopes(settings, b"admin-key ") == set()
    assert security.key_scopes(settings, "r\xe9load".encode("latin-1")) == set()
    assert security.key_scopes(make_settings(serving={"api_key": None, "reload_key": ""}), b"") == set()
    assert security.keys_granting(Scope.ROUTING) == ["serving.api_key"]
    assert security.keys_granting(Scope.RELOAD) == ["serving.api_key", "serving.reload_key"]


def test_user_names_airflow_cannot_parse_are_refused_by_the_settings():
    from pydantic import ValidationError

    for name in ("bob:admin", "a,b", " alice", ""):
        with pytest.raises(ValidationError, match=r"security\.users"):
            Settings(security={"users": {name: "admin"}})
