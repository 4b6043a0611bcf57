"""Task wiring shared by DAGs: the training stages that ``readmission_train`` and ``readmission_retrain`` both run.

Imported while DAG files are parsed: only ``airflow.sdk`` at the top; each task imports what it runs.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import task

from airloop.settings import get_settings


def train_and_register(dataset: Any) -> Any:
    """validate → split → train → register (+ gate) on the published version in ``dataset`` (``pipeline.load``'s
    dict, as an XComArg); returns register's XComArg."""

    @task
    def validate(dataset: dict, run_id=None) -> dict:
        from airloop.training import pipeline

        return pipeline.validate(get_settings(), dataset["version"], run_id)

    @task
    def split(dataset: dict, validation: dict, run_id=None) -> dict:
        from airloop.training import pipeline

        return pipeline.split(get_settings(), dataset["version"], run_id)

    @task
    def train(dataset: dict, split_info: dict, validation: dict, run_id=None) -> dict:
        from airloop.training import pipeline

        return pipeline.train(get_settings(), dataset, split_info, validation, run_id)

    @task
    def register(dataset: dict, split_info: dict, trained: dict, dag_run=None) -> dict:
        from airloop.training import pipeline

        return pipeline.register(
            get_settings(), dataset, split_info, trained, f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        )

    validation = validate(dataset)
    split_info = split(dataset, validation)
    return register(dataset, split_info, train(dataset, split_info, validation))
