"""The model monitor in the Airflow UI: the monitor app mounted by the API server at ``/airloop`` (below the path of
``[api] base_url``, like every route of the API server) and a "Model monitor" entry in the UI's navigation. Every
number it shows comes from ``airloop.monitor.state``; the web layer is ``airloop_monitor_ui`` beside this file."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin


class MonitorApp:
    """The monitor's ASGI app, built on its first request in the API server: every task process loads plugins (for
    macros) and must not pay for FastAPI, Airflow's auth module and the page on each start."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from airloop_monitor_ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "airloop_monitor_ui.app:create_app (built on first request)"


class AirloopMonitorPlugin(AirflowPlugin):
    """Mounts ``airloop_monitor_ui.app`` and links it from the navigation."""

    name = "airloop_monitor"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": MonitorApp(), "url_prefix": "/airloop", "name": "airloop model monitor"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Model monitor",
            # Relative: the UI resolves it against its <base href>, the path of [api] base_url ("/airflow/airloop/").
            "href": "airloop/",
            "destination": "nav",
            "nav_top_level": True,  # its own entry in the side bar, not under "Plugins"
            "url_route": "airloop_model_monitor",  # shown inside the Airflow UI (at /plugin/airloop_model_monitor)
        }
    ]
