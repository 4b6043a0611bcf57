"""Who may do what: airloop's four roles, what each one is in Airflow, who answers a promotion's approval, which
registry actions each role may run, and which admin scopes each serving key grants.

| airloop role     | Airflow (SimpleAuthManager) role | on top of that, airloop lets it                           |
|------------------|----------------------------------|-----------------------------------------------------------|
| `viewer`         | `viewer`: reads, writes nothing  | nothing                                                   |
| `data_scientist` | `user`: + trigger, pause, clear  | `<model>_registry` `show`                                 |
| `ml_engineer`    | `op`: + connections, variables   | answer promotion approvals; registry `promote`/`rollback` |
| `admin`          | `admin`: everything              | the above and registry `route` (change the live routing)  |

Airflow enforces the left column on every API call (a token from ``/auth/token``); the DAG-level rights of the
``user`` role cover every DAG, so airloop enforces the right column inside the run: the approval task is assigned to
the approvers only (Airflow answers anyone else 403), and ``<model>_registry`` checks the role of the user who
triggered the run before it moves an alias or the routing. The prediction service's admin endpoints take keys with
scopes instead (``key_scopes``).

Teams: a model whose spec names a ``team`` (``security.teams``) is acted on by that team's members, each with the
role the team gives them (at most their role above), and by admins; anyone else has ``security.outside_team_role``
on it (viewer, or none: not even seen). ``role_on_model`` is that role; every check above uses it, the first task of
every model DAG refuses a run a person triggered without ``data_scientist`` on the model (``authorize_run``), a
team's approvals go to its own approvers, its serving keys (``security.teams.<team>.*_key``) work for its models
only, and ``airloop.airflow_auth.TeamAuthManager`` makes Airflow itself refuse an outsider's trigger, clear, mark or
XCom write on the model's DAGs.

Imported while DAG files are parsed: the standard library and airloop.errors only.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airloop.errors import FinalError

if TYPE_CHECKING:
    from airloop.settings import Settings

# SimpleAuthManager reads `[core] simple_auth_manager_users` as "name:role,name:role": no ":" or "," in a name.
USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$"
# A team's name (``security.teams``, a spec's ``team``): lower case, as environment variables read it.
TEAM_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,40}$"
# The triggering user Airflow records for a run made by dag.test().
DAG_TEST_USER = "dag_test"


class Role(StrEnum):
    """airloop's roles, lowest first: each one may do what the ones before it may."""

    VIEWER = "viewer"
    DATA_SCIENTIST = "data_scientist"
    ML_ENGINEER = "ml_engineer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role) -> bool:
        """Whether this role may do what ``other`` may."""
        return self.rank >= other.rank


# The SimpleAuthManager role (viewer < user < op < admin) each airloop role signs in to Airflow with.
AIRFLOW_ROLES: dict[Role, str] = {
    Role.VIEWER: "viewer",
    Role.DATA_SCIENTIST: "user",  # may trigger, pause and clear DAG runs
    Role.ML_ENGINEER: "op",  # operates the pipeline: also connections (S3, Postgres, alerts), pools, variables
    Role.ADMIN: "admin",
}

# The lowest role that may run each <model>_registry action (None: any run may).
REGISTRY_ACTION_ROLES: dict[str, Role | None] = {
    "show": None,
    "promote": Role.ML_ENGINEER,
    "rollback": Role.ML_ENGINEER,
    "route": Role.ADMIN,
}


class Scope(StrEnum):
    """What a serving key may do."""

    PREDICT = "predict"  # POST /v1/predict: score records (and log them)
    FEEDBACK = "feedback"  # POST /v1/feedback: the observed outcome of a prediction, which the A/B test judges by
    HISTORY = "history"  # GET /v1/history: what served when, and every decision
    CORRECTION = "correction"  # PUT /v1/feedback/{request_id}: replace a recorded outcome, audited (admin only)
    ROUTING = "routing"  # PUT /v1/routing
    RELOAD = "reload"  # POST /v1/reload


# The serving settings holding keys (set them through the environment only) and the scopes each grants. Feedback has
# a key of its own: outcomes come from the system that knows them, not from whoever may ask for predictions.
SERVING_KEYS: dict[str, frozenset[Scope]] = {
    "api_key": frozenset(Scope),
    "reload_key": frozenset({Scope.RELOAD}),
    "predict_key": frozenset({Scope.PREDICT}),
    "feedback_key": frozenset({Scope.FEEDBACK}),
    "history_key": frozenset({Scope.HISTORY}),
}


class NotAuthorized(FinalError):
    """A user's role does not allow what the run asked for; the message names the user, the role and the role needed."""


class SecurityMisconfigured(FinalError):
    """The security settings cannot express what they are asked for (e.g. nobody may answer an approval)."""


def roles_from(role: Role) -> str:
    """``role`` and every role above it, as a person reads it: "ml_engineer or admin"."""
    return " or ".join(r.value for r in Role if r.at_least(role))


def airflow_users(settings: Settings) -> str:
    """``[core] simple_auth_manager_users`` (``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS``) for ``security.users``.

    No passwords: SimpleAuthManager generates one per user into its passwords file on first start."""
    if not settings.security.users:
        raise SecurityMisconfigured("security.users is empty: nobody could sign in to Airflow")
    return ",".join(f"{name}:{AIRFLOW_ROLES[role]}" for name, role in settings.security.users.items())


def role_of(settings: Settings, user: str | None) -> Role | None:
    """The airloop role of an Airflow user; a run without one (no user, or dag.test()) has
    ``security.unattributed_role``; a user not in ``security.users`` has none."""
    users = settings.security.users
    if user in users:
        return users[user]
    if user is None or user == DAG_TEST_USER:
        return settings.security.unattributed_role
    return None


def team_of(settings: Settings) -> str | None:
    """The team owning the model ``settings`` are bound to (its spec's ``team``), checked against ``security.teams``.

    Raises:
        SecurityMisconfigured: the spec names a team that ``security.teams`` does not have.
    """
    team = settings.security.team
    if team is not None and team not in settings.security.teams:
        raise SecurityMisconfigured(
            f"model {settings.model!r} belongs to team {team!r} (its spec's `team`), which security.teams does not"
            f" have: add the team and its members ({sorted(settings.security.teams) or 'no teams yet'})"
        )
    return team


def role_on_model(settings: Settings, user: str | None) -> Role | None:
    """What ``user`` may do with the model ``settings`` are bound to.

    A model without a team: the user's role (``role_of``). A team's model: admins are admins; a member has the role
    the team gives them, at most their role in ``security.users`` (what Airflow lets them do); anyone else has
    ``security.outside_team_role`` (viewer, or none). A run no signed-in user triggered (the loop's own) keeps
    ``security.unattributed_role``.

    Raises:
        SecurityMisconfigured: the model's team is not in ``security.teams``.
    """
    role = role_of(settings, user)
    team = team_of(settings)
    if team is None or role is None or role is Role.ADMIN or user not in settings.security.users:
        return role
    held = settings.security.teams[team].members.get(str(user))
    if held is None:
        outside = settings.security.outside_team_role
        return None if outside is None else Role(outside)
    return held if role.at_least(held) else role


def _who_has(settings: Settings, user: str | None, role: Role | None) -> tuple[str, str]:
    """("user 'bob'", "role data_scientist in team care") as a refusal names them."""
    if user is None or (user == DAG_TEST_USER and user not in settings.security.users):
        who = "a run no signed-in user triggered" + (" (dag.test())" if user else "")
        setting = "security.unattributed_role"
        return who, f"role {role.value} ({setting})" if role else f"no role ({setting}: null)"
    who = f"user {user!r}"
    if user not in settings.security.users:
        return who, "no role (not in security.users)"
    team = settings.security.team
    if team is None or settings.security.users[user] is Role.ADMIN:
        return who, f"role {role.value}" if role else "no role"
    if user in settings.security.teams[team].members:
        return who, f"role {role.value} in team {team!r}" if role else "no role"
    outside = f"role {role.value}" if role else "no role"
    return who, f"{outside} on team {team!r}'s model {settings.model!r} (not a member; security.outside_team_role)"


def may_see(settings: Settings, user: str | None) -> bool:
    """Whether ``user`` may see the model at all (its DAGs in Airflow, its monitor page): any role on it."""
    return role_on_model(settings, user) is not None


def authorize_run(settings: Settings, user: str | None, what: str, needed: Role = Role.DATA_SCIENTIST) -> None:
    """Refuse a run a signed-in user triggered for a model they may not act on (``what``: "retrain", "extract"...).

    The loop's own runs (a schedule, an asset event, a hand-off from another airloop run: no triggering user) pass;
    a run triggered by a person needs ``needed`` on the model (``role_on_model``: per team).

    Raises:
        NotAuthorized: naming the user, the role they have on the model, and the role needed.
    """
    if user is None or (user == DAG_TEST_USER and user not in settings.security.users):
        return
    role = role_on_model(settings, user)
    if role is not None and role.at_least(needed):
        return
    who, has = _who_has(settings, user, role)
    raise NotAuthorized(
        f"{who} may not {what} model {settings.model!r}: it has {has}; {what} needs {roles_from(needed)}"
    )


def approvers(settings: Settings) -> list[dict[str, str]]:
    """The users assigned to a promotion's approval: ``loop.approver_role`` and every role above it.

    As ``HITLUser`` dicts (``id`` = ``name`` = the SimpleAuthManager user name), for ``ApprovalOperator``'s
    ``assigned_users``: Airflow refuses (403) an answer from anyone else.

    Raises:
        SecurityMisconfigured: the approver role is not a role, is ``viewer`` (viewers cannot answer in Airflow), or
            no user holds it: an approval assigned to nobody could be answered by anyone allowed to edit the DAG.
    """
    try:
        needed = Role(settings.loop.approver_role)
    except ValueError as error:
        raise SecurityMisconfigured(
            f"loop.approver_role {settings.loop.approver_role!r} is not a role: choose one of {[r.value for r in Role]}"
        ) from error
    if needed is Role.VIEWER:
        raise SecurityMisconfigured("loop.approver_role is viewer: viewers cannot answer an approval in Airflow")
    names = [
        name for name in settings.security.users if (role := role_on_model(settings, name)) and role.at_least(needed)
    ]
    if not names:
        team = f" in team {settings.security.team!r}" if settings.security.team else ""
        raise SecurityMisconfigured(
            f"no user in security.users is {roles_from(needed)}{team} (loop.approver_role): nobody could approve a"
            " promotion"
        )
    return [{"id": name, "name": name} for name in names]


def authorize_registry_action(settings: Settings, action: str, user: str | None) -> Role | None:
    """The role of ``user`` (the user who triggered the run) if it may run registry ``action``.

    Raises:
        ValueError: ``action`` is not a registry action.
        NotAuthorized: the user's role is below the one ``action`` needs, or the user has no role.
    """
    if action not in REGISTRY_ACTION_ROLES:
        raise ValueError(f"unknown registry action {action!r}; choose one of {tuple(REGISTRY_ACTION_ROLES)}")
    needed = REGISTRY_ACTION_ROLES[action]
    role = role_on_model(settings, user)
    signed_in = user is not None and user in settings.security.users
    if (role is not None and (needed is None or role.at_least(needed))) or (needed is None and not signed_in):
        return role
    who, has = _who_has(settings, user, role)
    if needed is None:  # a signed-in user outside the model's team, which security.outside_team_role hides
        raise NotAuthorized(f"{who} may not {action}: it has {has}")
    raise NotAuthorized(f"{who} may not {action}: it has {has}; {action} needs {roles_from(needed)}")


def approved_by(settings: Settings, approval: Mapping[str, Any] | None) -> str | None:
    """Who approved a promotion, from the approval task's result; None when ``loop.require_approval`` is off.

    Raises:
        NotAuthorized: approval is required and the result holds no "Approve" from an assigned approver (e.g. the
            approval task was marked successful by hand instead of answered).
    """
    if not settings.loop.require_approval:
        return None
    approval = approval or {}
    user = approval.get("responded_by_user") or {}
    user_id = user.get("id") if isinstance(user, Mapping) else None
    allowed = [a["id"] for a in approvers(settings)]
    if approval.get("chosen_options") != ["Approve"] or user_id not in allowed:
        answer = f"{approval.get('chosen_options')} by {user_id!r}" if approval else "no answer"
        raise NotAuthorized(
            f"a promotion needs an approval answered by one of {allowed} (loop.approver_role); approve holds "
            f"{answer}: was it marked successful by hand?"
        )
    return str(user.get("name") or user_id)


def serving_keys(settings: Settings) -> Iterator[tuple[str, str, frozenset[Scope]]]:
    """(name, key, scopes) of every key valid for the model ``settings`` are bound to: the platform's
    (``serving.*_key``, named "api_key", ...) and its team's (``security.teams.<team>.*_key``, named
    "teams.<team>.api_key", ...), which no other team's model takes."""
    for field, scopes in SERVING_KEYS.items():
        if expected := getattr(settings.serving, field):
            yield field, expected, scopes
    team = settings.security.team
    if team is not None and team in settings.security.teams:
        keys = settings.security.teams[team]
        for field, scopes in SERVING_KEYS.items():
            if expected := getattr(keys, field):
                yield f"teams.{team}.{field}", expected, scopes


def key_scopes(settings: Settings, presented: bytes) -> frozenset[Scope]:
    """The scopes the serving key ``presented`` grants on the model ``settings`` are bound to (none for an unknown
    key, or another team's).

    Compared in constant time with every configured key, as bytes: the header holds whatever octets the client sent,
    and ``secrets.compare_digest`` refuses str with non-ASCII characters."""
    granted: set[Scope] = set()
    for _name, expected, scopes in serving_keys(settings):
        if secrets.compare_digest(presented, expected.encode()):
            granted |= scopes
    return frozenset(granted)


def key_source(settings: Settings, presented: bytes | None) -> str:
    """The name of the key ``presented`` is ("feedback_key", "teams.care.feedback_key", ...), or "open" for a request
    without a key that an open scope let in: what a feedback row records as its source."""
    if presented:
        for name, expected, _scopes in serving_keys(settings):
            if secrets.compare_digest(presented, expected.encode()):
                return name
    return "open"


def check_serving(settings: Settings) -> None:
    """Refuse to serve with settings that would let anyone forge what the service trusts.

    Raises:
        SecurityMisconfigured: ``serving.request_id_key`` is unset (request ids, which feedback must quote, would be
            signed with a key everyone knows) or shorter than 16 characters.
    """
    key = settings.serving.request_id_key
    if not key or len(key) < 16:
        raise SecurityMisconfigured(
            "serving.request_id_key is "
            + ("not set" if not key else "shorter than 16 characters")
            + ": set AIRLOOP_SERVING__REQUEST_ID_KEY to a random secret, the same on every replica (the demo makes"
            " one)"
        )


def keys_granting(scope: Scope, team: str | None = None) -> list[str]:
    """The settings whose key grants ``scope`` (``serving.api_key``, ...; also the team's with ``team``), to say which
    key a request needs."""
    fields = [field for field, scopes in SERVING_KEYS.items() if scope in scopes]
    team_keys = [f"security.teams.{team}.{field}" for field in fields] if team else []
    return [f"serving.{field}" for field in fields] + team_keys
