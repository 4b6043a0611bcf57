"""The model monitor as a FastAPI app, mounted by the Airflow API server at ``/airloop`` (plugins/airloop_monitor.py).

Routes: ``GET /`` the page (``page.PAGE``: one self-contained HTML document; ``?model=<name>`` selects the model it
shows, ``models.default`` without one), ``GET /api/models`` the models it can show (``state.models_overview``: every
valid spec, and every broken spec file with its error), ``GET /api/state?model=<name>`` what it shows of that model
(``state.monitor_state`` on the model's own settings; 404 naming a model no valid spec has) and what the signed-in user
may do (``airloop.security``), ``GET /reports/<model>/v<version>/<report>`` the HTML page of a published drift report
(``state.report_page``: only folders the reports listing holds, 404 otherwise), so the page links to it over http
whether the runtime root is a local folder or S3. Every route requires the user the rest of the Airflow UI has signed
in: Airflow's own ``get_user`` dependency, which reads the JWT from the ``Authorization: Bearer`` header or the
``_token`` cookie and validates it with the configured auth manager (401 without a token, 403 for an invalid one).
Airflow does not protect a plugin's app by itself.

Promote and rollback are not routes here: the page triggers the model's own ``<name>_registry`` DAG through Airflow's
REST API, so each action is an audited Airflow run whose role check (``airloop.security``) decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from airloop.settings import Settings, get_settings

REGISTRY_STAGE = "registry"  # the model's <name>_registry DAG: promote and rollback
APPROVAL_STAGE = "ab_evaluate"  # its approve task waits for a person when loop.require_approval
BUTTON_ACTIONS = ("promote", "rollback")
# A drift report is a page of data, not of code: no scripts, nothing fetched, not framed by anyone else.
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def airflow_user_dependency() -> Callable[..., Any]:
    """Airflow's dependency for the signed-in user (imported here, not at module import: it loads Airflow's models)."""
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


def platform_settings() -> Settings:
    """The default model's settings, for what is not one model's: the catalog of specs, every model's reports."""
    return get_settings()


def model_settings(model: str | None = None) -> Settings:
    """The settings of the model ``?model=`` names (``models.default`` without one).

    Raises:
        HTTPException: 404 when no valid spec has that name, naming it and the models there are (or, for a broken
            spec file, its error).
    """
    name = model or get_settings().models.default
    found = get_settings().catalog
    if name not in found.specs:
        broken = [str(error) for path, error in found.errors.items() if name in (path.stem, path.parent.name)]
        known = ", ".join(sorted(found.specs)) or "none"
        detail = f"model {name!r}: {broken[0]}" if broken else f"no model {name!r} (models: {known})"
        raise HTTPException(404, detail=f"model: {detail}")
    return get_settings(name)


def permissions(settings: Settings, user: str) -> dict[str, dict[str, Any]]:
    """Per button action: may ``user`` run it in the model's ``<name>_registry``? If not, the role check's own words."""
    from airloop.security import NotAuthorized, authorize_registry_action

    found = {}
    for action in BUTTON_ACTIONS:
        try:
            authorize_registry_action(settings, action, user)
        except NotAuthorized as refused:
            found[action] = {"allowed": False, "why": str(refused)}
        else:
            found[action] = {"allowed": True, "why": ""}
    return found


def visible(settings: Settings, user: str) -> None:
    """Refuse (403) a model ``user`` may not see: another team's, with ``security.outside_team_role`` null.

    Raises:
        HTTPException: 403 naming the model and its team.
    """
    from airloop import security

    if not security.may_see(settings, user):
        team = settings.security.team
        raise HTTPException(403, detail=f"model: {settings.model!r} belongs to team {team!r}; {user!r} is not in it")


def finished_run_states() -> list[str]:
    """The states a DAG run ends in (Airflow's own list): where the page stops following a run it triggered."""
    from airflow.utils.state import State

    return sorted(str(s) for s in State.finished_dr_states)


def create_app(user_dependency: Callable[..., Any] | None = None) -> FastAPI:
    """The monitor app; ``user_dependency`` resolves the signed-in user (Airflow's ``get_user`` by default)."""
    from airloop.monitor.state import models_overview, monitor_state, report_page
    from airloop_monitor_ui.page import PAGE

    user_of = Depends(user_dependency or airflow_user_dependency())
    router = APIRouter(dependencies=[user_of])

    @router.get("/", response_class=HTMLResponse, summary="The model monitor page")
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    @router.get("/api/models", summary="The models the monitor can show the signed-in user, and broken spec files")
    def models(settings: Annotated[Settings, Depends(platform_settings)], user: Any = user_of) -> dict[str, Any]:
        return models_overview(settings, user.get_name())

    @router.get("/api/state", summary="What the model monitor shows of one model (?model=<name>)")
    def state(settings: Annotated[Settings, Depends(model_settings)], user: Any = user_of) -> dict[str, Any]:
        name, spec = user.get_name(), settings.spec
        visible(settings, name)
        return {
            **monitor_state(settings),
            "user": {
                "name": name,
                "registry_dag": spec.dag_id(REGISTRY_STAGE),
                "approval_dag": spec.dag_id(APPROVAL_STAGE),
                "may": permissions(settings, name),
            },
            "airflow": {"finished_run_states": finished_run_states()},
        }

    @router.get("/reports/{path:path}", response_class=HTMLResponse, summary="A published drift report's HTML page")
    def drift_report(
        path: str, settings: Annotated[Settings, Depends(platform_settings)], user: Any = user_of
    ) -> HTMLResponse:
        parts = path.split("/")
        if parts[0] in settings.catalog.specs:
            visible(settings.for_model(parts[0]), user.get_name())
        page = report_page(settings, parts)
        if page is None:
            raise HTTPException(404, detail=f"report: no published drift report at {path!r}")
        return HTMLResponse(page, headers=REPORT_HEADERS)

    app = FastAPI(title="airloop model monitor", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router)
    return app
