# airloop on the official Airflow image: the same pins as the dev virtualenv, dags/plugins/config from this repo.
# Build: docker build -t airloop:dev .   (not built in this repo's CI: no Docker engine there)
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

USER airflow
COPY --chown=airflow:0 requirements.txt /opt/airloop/requirements.txt
RUN pip install --no-cache-dir -r /opt/airloop/requirements.txt

COPY --chown=airflow:0 pyproject.toml /opt/airloop/pyproject.toml
COPY --chown=airflow:0 include /opt/airloop/include
COPY --chown=airflow:0 config /opt/airloop/config
RUN pip install --no-cache-dir --no-deps -e /opt/airloop

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins

ENV AIRLOOP_CONFIG=/opt/airloop/config/airloop.yaml \
    AIRLOOP_HOME=/opt/airflow/airloop \
    GX_ANALYTICS_ENABLED=False
