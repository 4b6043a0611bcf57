"""The model monitor's web layer (FastAPI app and page): kept beside the plugin, since ``airloop`` imports no FastAPI.
Airflow does not load these modules as plugins (plugins/.airflowignore); the plugin imports them."""
