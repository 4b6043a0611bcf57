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


# --- teams ---------------------------------------------------------------------------------------------------------

CREW = {**TEAM, "carol": "ml_engineer", "bob": "data_scientist", "dave": "data_scientist"}
TEAMS = {
    "care": {"members": {"scientist": "data_scientist", "carol": "ml_engineer", "dave": "ml_engineer"}},
    "growth": {"members": {"bob": "ml_engineer"}, "predict_key": "k-growth-predict-01"},
}


def team_settings(team: str | None = "care", outside: str | None = "viewer", **security_values) -> Settings:
    """Settings bound to a model of ``team``: carol is care's ml_engineer, dave holds ml_engineer in care but only
    data_scientist in security.users, bob is growth's, the engineer is in no team."""
    section = SecuritySettings(users=CREW, teams=TEAMS, team=team, outside_team_role=outside, **security_values)
    return Settings(model="readmission").model_copy(update={"security": section})


@pytest.mark.security
@pytest.mark.parametrize(
    ("user", "role"),
    [
        ("scientist", Role.DATA_SCIENTIST),
        ("carol", Role.ML_ENGINEER),
        ("dave", Role.DATA_SCIENTIST),  # the team's role, at most the one Airflow knows
        ("admin", Role.ADMIN),  # admins act on every team's models
        ("bob", Role.VIEWER),  # another team's ml_engineer: outside_team_role
        ("engineer", Role.VIEWER),
        ("viewer", Role.VIEWER),
        ("mallory", None),  # not a user
        (None, None),  # the loop's own run: security.unattributed_role
    ],
)
def test_on_a_teams_model_each_user_has_the_role_the_team_gives_them(user, role):
    assert security.role_on_model(team_settings(), user) is role


@pytest.mark.security
def test_a_model_of_no_team_keeps_everyones_role_and_an_outsider_may_be_hidden():
    assert security.role_on_model(team_settings(team=None), "bob") is Role.DATA_SCIENTIST
    hidden = team_settings(outside=None)
    assert security.role_on_model(hidden, "bob") is None and not security.may_see(hidden, "bob")
    assert security.may_see(hidden, "scientist") and security.may_see(hidden, "admin")


@pytest.mark.security
def test_another_teams_data_scientist_may_not_retrain_route_or_promote_and_is_told_why():
    settings = team_settings()
    with pytest.raises(NotAuthorized) as retrain:
        security.authorize_run(settings, "bob", "retrain")
    assert str(retrain.value) == (
        "user 'bob' may not retrain model 'readmission': it has role viewer on team 'care''s model 'readmission' (not"
        " a member; security.outside_team_role); retrain needs data_scientist or ml_engineer or admin"
    )
    for action in ("promote", "route"):
        with pytest.raises(NotAuthorized, match="user 'bob' may not"):
            security.authorize_registry_action(settings, action, "bob")
    with pytest.raises(NotAuthorized, match="it has role data_scientist in team 'care'; promote needs ml_engineer"):
        security.authorize_registry_action(settings, "promote", "dave")
    security.authorize_run(settings, "scientist", "retrain")
    assert security.authorize_registry_action(settings, "promote", "carol") is Role.ML_ENGINEER
    # The loop's own runs (schedules, asset events, hand-offs) and dag.test() are not a person's.
    security.authorize_run(settings, None, "retrain")
    security.authorize_run(settings, "dag_test", "retrain")
    with pytest.raises(NotAuthorized, match="user 'bob' may not show: it has no role"):
        security.authorize_registry_action(team_settings(outside=None), "show", "bob")


@pytest.mark.security
def test_a_teams_promotions_are_approved_by_its_own_ml_engineers_and_the_admins():
    assert [a["id"] for a in security.approvers(team_settings())] == ["admin", "carol"]
    # bob holds ml_engineer in growth but signs in to Airflow as a data scientist: he may not approve there either.
    assert [a["id"] for a in security.approvers(team_settings(team="growth"))] == ["admin"]
    approval = {"chosen_options": ["Approve"], "responded_by_user": {"id": "engineer", "name": "engineer"}}
    settings = team_settings().model_copy(
        update={"loop": team_settings().loop.model_copy(update={"require_approval": True})}
    )
    with pytest.raises(NotAuthorized, match=r"one of \['admin', 'carol'\]"):
        security.approved_by(settings, approval)


@pytest.mark.security
def test_a_teams_serving_keys_grant_on_its_models_only():
    care, growth = team_settings(), team_settings(team="growth")
    key = b"k-growth-predict-01"
    assert security.key_scopes(growth, key) == {Scope.PREDICT}
    assert security.key_source(growth, key) == "teams.growth.predict_key"
    assert security.key_scopes(care, key) == frozenset() and security.key_source(care, key) == "open"


@pytest.mark.security
def test_a_team_the_settings_do_not_have_or_a_member_who_is_no_user_is_refused():
    with pytest.raises(SecurityMisconfigured, match=r"team 'radiology' .* which security.teams does not have"):
        security.role_on_model(team_settings(team="radiology"), "scientist")
    with pytest.raises(
        ValueError, match=r"security\.teams\.care\.members names \['zoe'\], who are not in security\.users"
    ):
        SecuritySettings(users=TEAM, teams={"care": {"members": {"zoe": "admin"}}})


def test_the_shipped_specs_name_teams_the_shipped_settings_have():
    from airloop.settings import get_settings

    for name in get_settings().catalog.specs:
        settings = get_settings(name)
        assert settings.security.team in settings.security.teams, name
        assert security.approvers(settings)


@pytest.fixture
def team_auth_manager(monkeypatch):
    """airloop's TeamAuthManager over the shipped specs (readmission: team care, churn: team growth) and settings,
    with bob added: a data scientist of growth only."""
    from airloop import airflow_auth
    from airloop.airflow_auth import TeamAuthManager
    from airloop.settings import get_settings

    monkeypatch.setenv("AIRLOOP_SECURITY__USERS", '{"bob": "data_scientist"}')
    monkeypatch.setenv("AIRLOOP_SECURITY__TEAMS__GROWTH__MEMBERS", '{"bob": "data_scientist"}')
    get_settings.cache_clear()
    monkeypatch.setitem(airflow_auth._cache, "at", float("-inf"))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", security.airflow_users(get_settings()))
    manager = TeamAuthManager()
    yield manager, {user.username: user for user in manager.get_users()}
    get_settings.cache_clear()
    airflow_auth._cache["at"] = float("-inf")


@pytest.mark.security
def test_airflow_refuses_another_teams_data_scientist_on_a_models_dags(team_auth_manager):
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager, users = team_auth_manager

    def may(user: str, method: str, dag_id: str, entity=DagAccessEntity.RUN) -> bool:
        details = DagDetails(id=dag_id)
        return manager.is_authorized_dag(method=method, access_entity=entity, details=details, user=users[user])

    # Trigger or clear runs of readmission (team care): its data scientist may, growth's bob may not.
    for entity in (DagAccessEntity.RUN, DagAccessEntity.TASK_INSTANCE):
        assert may("scientist", "POST", "readmission_retrain", entity)
        assert not may("bob", "POST", "readmission_retrain", entity)
        assert not may("bob", "PUT", "readmission_registry", entity)
    # Nobody but an admin writes an XCom, on any DAG; everyone who sees a DAG reads them.
    xcom = DagAccessEntity.XCOM
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert not may("scientist", method, "readmission_ab_evaluate", xcom) and not may(
            "bob", method, "churn_etl", xcom
        )
        assert not may("scientist", method, "some_other_dag", xcom) and may("admin", method, "readmission_etl", xcom)
    assert may("scientist", "GET", "readmission_ab_evaluate", xcom)
    assert may("bob", "POST", "churn_retrain") and may("admin", "POST", "readmission_registry")
    assert may("bob", "GET", "readmission_retrain")  # outside_team_role viewer: he sees it
    assert not may("viewer", "POST", "churn_retrain")  # SimpleAuthManager's own answer stands
    assert may("bob", "POST", "some_other_dag")  # not a model's DAG: SimpleAuthManager's answer
    visible = manager.filter_authorized_dag_ids(
        dag_ids={"readmission_etl", "churn_etl"}, user=users["bob"], method="PUT"
    )
    assert visible == {"churn_etl"}


def test_airloops_standalone_keeps_a_simple_auth_manager_subclass_and_nothing_else():
    from airloop.cli.airflow_standalone import SIMPLE, keeps

    assert keeps("airloop.airflow_auth.TeamAuthManager") and keeps(SIMPLE)
    assert not keeps("airloop.settings.Settings") and not keeps("no.such.Manager") and not keeps(None)
