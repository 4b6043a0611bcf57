"""The model monitor as a FastAPI app, mounted by the Airflow API server at ``/airloop`` (plugins/airloop_monitor.py).

Routes: ``GET /`` the page (``page.PAGE``: one self-contained HTML document), ``GET /api/state`` what it shows
(``state.monitor_state``) and what the signed-in user may do (``airloop.security``), ``GET /reports/{path}`` the HTML
page of a published drift report (``state.report_page``: only folders the reports listing holds, 404 otherwise), so the
page links to it over http whether the runtime root is a local folder or S3. Every route requires the user the
rest of the Airflow UI has signed in: Airflow's own ``get_user`` dependency, which reads the JWT from the
``Authorization: Bearer`` header or the ``_token`` cookie and validates it with the configured auth manager (401 without
a token, 403 for an invalid one). Airflow does not protect a plugin's app by itself.

Promote and rollback are not routes here: the page triggers ``readmission_registry`` through Airflow's REST API, so
each action is an audited Airflow run whose role check (``airloop.security``) decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from airloop.settings import Settings, get_settings

REGISTRY_DAG = "readmission_registry"
APPROVAL_DAG = "readmission_ab_evaluate"  # its approve task waits for a person when loop.require_approval
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


def permissions(settings: Settings, user: str) -> dict[str, dict[str, Any]]:
    """Per button action: may ``user`` run it in ``readmission_registry``? If not, the role check's own words."""
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


def finished_run_states() -> list[str]:
    """The states a DAG run ends in (Airflow's own list): where the page stops following a run it triggered."""
    from airflow.utils.state import State

    return sorted(str(s) for s in State.finished_dr_states)


def create_app(user_dependency: Callable[..., Any] | None = None) -> FastAPI:
    """The monitor app; ``user_dependency`` resolves the signed-in user (Airflow's ``get_user`` by default)."""
    from airloop.monitor.state import monitor_state, report_page
    from airloop_monitor_ui.page import PAGE

    user_of = Depends(user_dependency or airflow_user_dependency())
    router = APIRouter(dependencies=[user_of])

    @router.get("/", response_class=HTMLResponse, summary="The model monitor page")
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    @router.get("/api/state", summary="What the model monitor shows")
    def state(settings: Annotated[Settings, Depends(get_settings)], user: Any = user_of) -> dict[str, Any]:
        name = user.get_name()
        return {
            **monitor_state(settings),
            "user": {
                "name": name,
                "registry_dag": REGISTRY_DAG,
                "approval_dag": APPROVAL_DAG,
                "may": permissions(settings, name),
            },
            "airflow": {"finished_run_states": finished_run_states()},
        }

    @router.get("/reports/{path:path}", response_class=HTMLResponse, summary="A published drift report's HTML page")
    def drift_report(path: str, settings: Annotated[Settings, Depends(get_settings)]) -> HTMLResponse:
        page = report_page(settings, path.split("/"))
        if page is None:
            raise HTTPException(404, detail=f"report: no published drift report at {path!r}")
        return HTMLResponse(page, headers=REPORT_HEADERS)

    app = FastAPI(title="airloop model monitor", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router)
    return app
