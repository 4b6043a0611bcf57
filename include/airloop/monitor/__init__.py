"""The model monitor's data: the registry, the live experiment, drift and the decision history in one JSON document
(``state``). Its web layer (FastAPI app and page) lives beside the plugin in plugins/airloop_monitor_ui/."""
