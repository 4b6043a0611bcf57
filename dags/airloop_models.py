"""
### airloop models

One factory for every model: each spec file in `models/` (`models.folder`) becomes seven DAGs, `<name>_etl`,
`<name>_train`, `<name>_drift`, `<name>_retrain`, `<name>_ab_evaluate`, `<name>_registry` and `<name>_batch_score`,
tagged with the model's name (see `airloop.dag_factory`). Adding a spec adds its DAGs at the next parse; removing it
removes them; a broken spec is listed, naming its file, key and what was expected, by `airloop_broken_specs` (tag
`broken-spec`), and the other models' DAGs still parse and run. Parsing reads the spec files and nothing else
(Airflow's safe mode looks for the words "airflow" and "dag" in a file before it parses it: both are here).
"""

from __future__ import annotations

# The Airflow modules the factory builds with, named here so that the DAG processor imports them once, before it
# forks the process that parses this file ([dag_processor] parsing_pre_import_modules), not at every parse.
import airflow.providers.standard.decorators.python
import airflow.providers.standard.operators.hitl
import airflow.providers.standard.operators.trigger_dagrun
import airflow.sdk  # noqa: F401

from airloop.dag_factory import build_all

globals().update(build_all())
