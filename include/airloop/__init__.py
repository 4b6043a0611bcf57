"""airloop: closed-loop machine learning on Apache Airflow."""

__version__ = "0.1.0"
