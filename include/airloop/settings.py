"""The one typed settings object: defaults in config/airloop.yaml, environment variables override.

Environment variables use the prefix ``AIRLOOP_`` and ``__`` between levels, e.g. ``AIRLOOP_HOME=/srv/airloop`` or
``AIRLOOP_DATA__SOURCE=file``. The defaults file is ``$AIRLOOP_CONFIG``, else ``config/airloop.yaml`` in the working
directory when there is one, else the copy shipped inside the package, so an installed package runs from any folder.
Relative paths are resolved against the working directory.
"""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, PrivateAttr, StringConstraints, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource
from pydantic_settings.sources import InitSettingsSource

from airloop.registry.contract import Alias
from airloop.security import TEAM_NAME_PATTERN, USER_NAME_PATTERN, Role, Scope

if TYPE_CHECKING:
    from airloop.spec import Catalog, ModelSpec
    from airloop.storage import RuntimeLayout

CONFIG_ENV = "AIRLOOP_CONFIG"
CONFIG_FILE = "airloop.yaml"
ROUTING_FILE = "routing.yaml"


def read_yaml(path: Path) -> Any:
    """A YAML file's content, parsed once per version of the file (its path, size and modification time) with
    libyaml's loader when it is there: settings are built once per model while Airflow parses the DAG factory."""
    stat = path.stat()
    return copy.deepcopy(_parsed_yaml(path, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=64)
def _parsed_yaml(path: Path, mtime_ns: int, size: int) -> Any:
    return parse_yaml(path.read_text(encoding="utf-8"))


def parse_yaml(text: str) -> Any:
    """YAML text to plain data, safely (no tags run), with the C loader when PyYAML has it."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class CachedYamlSource(YamlConfigSettingsSource):
    """``YamlConfigSettingsSource`` reading through ``read_yaml``."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        return read_yaml(Path(str(file_path))) or {}


def packaged_config(name: str) -> Path:
    """A defaults file shipped in the package's ``config/`` folder (``airloop.yaml``, ``routing.yaml``)."""
    path = Path(str(resources.files("airloop") / "config" / name))
    if not path.is_file():
        raise FileNotFoundError(f"packaged config {name!r} not found at {path}: reinstall airloop")
    return path


def config_file() -> Path:
    """The defaults file: ``$AIRLOOP_CONFIG``, else ``./config/airloop.yaml`` if present, else the packaged one."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser().resolve()
    local = Path.cwd() / "config" / CONFIG_FILE
    return local if local.is_file() else packaged_config(CONFIG_FILE)


class DriftSettings(BaseModel):
    """Drift injected by the synthetic generator (0 = none, 1 = strong)."""

    covariate: float = Field(0.0, ge=0.0, le=3.0)
    concept: float = Field(0.0, ge=0.0, le=3.0)


class DataAccessSettings(BaseModel):
    """Where a run's params may point a source (``airloop.data.access``): the configured source is always allowed;
    another ``path``, ``s3_uri`` or ``postgres_table`` only inside these lists, and only for runs of ``override_role``
    or above when it is set."""

    # Folders a `path` param may name a file below (after symlinks); empty = <home>/incoming.
    file_roots: list[Path] = []
    # "s3://bucket/prefix/" an `s3_uri` param may name an object below; empty = none but the configured s3_uri.
    s3_prefixes: list[str] = []
    # "schema.table" patterns (fnmatch) a `postgres_table` param may name; empty = the model's own table only. System
    # schemas (pg_catalog, information_schema, pg_toast) are never allowed.
    postgres_tables: list[str] = []
    # The lowest role whose runs may point a source elsewhere at all; None = whoever Airflow lets trigger the DAG.
    override_role: Role | None = None


class DataSettings(BaseModel):
    """Where raw encounters come from."""

    source: Literal["synthetic", "file", "s3", "postgres"] = "synthetic"
    path: Path | None = None
    s3_uri: str | None = None
    s3_conn_id: str = "airloop_s3"
    postgres_conn_id: str = "airloop_postgres"
    postgres_table: str | None = None  # None = a table named like the model
    synthetic_rows: int = Field(20_000, gt=0)
    synthetic_seed: int = 42
    drift: DriftSettings = DriftSettings()
    dataset_name: str = ""  # the model's dataset (from its spec)
    access: DataAccessSettings = DataAccessSettings()


class StorageSettings(BaseModel):
    """The runtime root of datasets, quarantine, Data Docs, reports and logs. S3 credentials: in Airflow tasks from the
    connection ``s3_conn_id`` when it exists, else (and in serving) the standard AWS chain."""

    url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_conn_id: str | None = "airloop_storage"
    # Log compaction (airloop.predlog.compact; <model>_drift's compact_logs task, hourly): the hours of the last
    # lookback that ended settle_s ago or earlier become one file each; the parts a compacted file holds are deleted
    # once it is grace_s old (a reader that listed them before it appeared still finds them).
    log_compact_lookback_hours: int = Field(48, ge=1, le=24 * 60)
    log_compact_settle_s: float = Field(300.0, ge=0)
    log_compact_grace_s: float = Field(3600.0, ge=0)


class QualitySettings(BaseModel):
    """Bounds the Great Expectations suites enforce."""

    min_rows: int = Field(500, ge=1)
    max_rows: int = Field(5_000_000, ge=1)


class MlflowSettings(BaseModel):
    """Tracking server, model registry and artifact store. Empty URIs mean the embedded default under ``home``."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = ""  # the model's training experiment (from its spec)
    model_name: str = ""  # the registered model (from its spec)
    host: str = "127.0.0.1"
    port: int = Field(5000, gt=0, lt=65536)

    @property
    def ui_url(self) -> str:
        """Where `make demo` serves the MLflow UI."""
        return f"http://{self.host}:{self.port}"


class TrainingSettings(BaseModel):
    """Split, candidate search and the champion/challenger gate."""

    seed: int = 42
    test_size: float = Field(0.2, gt=0, lt=1)
    validation_size: float = Field(0.15, gt=0, lt=1)
    metric: Literal["roc_auc", "pr_auc", "log_loss", "brier", "f1"] = "roc_auc"
    margin: float = 0.005
    candidates: dict[str, list[dict[str, float | int | str]]] = {
        "hist_gradient_boosting": [{"learning_rate": 0.1, "max_leaf_nodes": 31}],
        "logistic_regression": [{"C": 1.0}],
    }
    importance_rows: int = Field(2000, ge=100)
    # A search instead of fixed candidates (airloop.spec.schema.SearchSpec): {budget, minutes, space, folds, ...}
    search: dict[str, Any] | None = None


class LedgerSettings(BaseModel):
    """The decision ledger: drift verdicts, training hand-offs, retrains and (later) every loop decision."""

    url: str | None = None


class MonitoringSettings(BaseModel):
    """The drift DAG: how often it looks, the thresholds of its verdict, what it alerts and what it triggers."""

    interval_minutes: int = Field(60, ge=1)
    psi: float = Field(0.2, gt=0)
    drifted_share: float = Field(0.3, gt=0, le=1)
    prediction_psi: float = Field(0.2, gt=0)
    min_rows: int = Field(500, ge=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    psi_overrides: dict[str, float] = {}
    weights: dict[str, float] = {}
    max_estimated_auc_drop: float = Field(0.05, gt=0, le=1)
    importance_floor: float = Field(0.05, ge=0, le=1)
    importance_drift: float = Field(0.2, ge=0, le=1)
    max_missing_change: float = Field(0.1, ge=0, le=1)
    max_unseen_share: float = Field(0.05, ge=0, le=1)
    calibration_level: float = Field(0.999, gt=0.5, lt=1)
    min_calibration_gap: float = Field(0.01, ge=0, le=1)
    auc_tolerance: float = Field(0.01, ge=0, le=1)
    min_labelled_rows: int = Field(200, ge=1)
    multivariate_auc: float = Field(0.6, ge=0.5, lt=1)
    segments: list[str] = []  # model features whose bins are segments (set per model in its spec)
    window_part_mb: float = Field(128.0, gt=0)
    max_window_parts: int = Field(64, ge=1, le=1024)
    retrain_dag_id: str = ""  # <model>_retrain (from its spec)
    cooldown_hours: float = Field(24.0, ge=0)
    webhook_conn_id: str | None = "airloop_alerts_webhook"
    email_conn_id: str | None = "airloop_alerts_smtp"
    email_to: list[str] = []


class LoopSettings(BaseModel):
    """Closing the loop: what a retrain trains on, how its challenger is tested live, and when it is promoted."""

    retrain_policy: Literal["latest_plus_window", "sliding_window", "latest", "all_history"] = "latest_plus_window"
    window_days: float = Field(30.0, gt=0)
    split: dict[str, float] = {Alias.CHAMPION.value: 90.0, Alias.CHALLENGER.value: 10.0}
    mode: Literal["ab", "shadow"] = "ab"
    evaluation_interval_minutes: int = Field(60, ge=1)
    metric: Literal["roc_auc", "log_loss", "brier"] = "log_loss"
    min_effect: float = Field(0.0, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    min_rows: int = Field(200, ge=1)
    max_calibration_gap: float = Field(0.1, gt=0)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_latency_ratio: float = Field(2.0, ge=1)
    min_latency_gap_ms: float = Field(5.0, ge=0)
    score_both: bool = True  # A/B mode: the other variant scores each request too (unserved), for a paired test
    require_approval: bool = False
    approver_role: str = "ml_engineer"


class BatchSettings(BaseModel):
    """<model>_batch_score: how many records it holds at once."""

    chunk_rows: int = Field(50_000, ge=1)


class ServingSettings(BaseModel):
    """The prediction service: limits, micro-batching, registry polling, admin key, routing file."""

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    api_key: str | None = None  # admin key: every scope (airloop.security.SERVING_KEYS)
    reload_key: str | None = None  # scope reload only
    predict_key: str | None = None  # scope predict: the clients that ask for scores
    feedback_key: str | None = None  # scope feedback: the system that knows the outcomes
    history_key: str | None = None  # scope history: who may read what served when and every decision
    # Scopes a request without a key is granted (e.g. [predict] behind a gateway that authenticates); [] = none.
    # Only the clients' scopes: an admin scope is never open.
    open_scopes: list[Literal[Scope.PREDICT, Scope.FEEDBACK, Scope.HISTORY]] = []
    # Signs request ids so /v1/feedback recognises the ones it issued; the same on every replica (set it by env). The
    # service refuses to start without one (airloop.security.check_serving).
    request_id_key: str | None = None
    # Request ids whose feedback each replica remembers, to refuse a duplicate with 409.
    feedback_memory: int = Field(200_000, ge=1)
    routing_file: Path | None = None  # None = the packaged config/routing.yaml; always a Path after validation
    max_batch_records: int = Field(256, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024)  # of a /predict request
    max_request_bytes: int = Field(65_536, ge=1024)  # of any other request (feedback, routing, ...)
    batch_max_size: int = Field(64, ge=1)
    batch_max_wait_ms: float = Field(2.0, ge=0)
    # Rate limit per (key, client address): tokens a second and burst; null = off (the demo's loopback).
    rate_limit_per_s: float | None = Field(None, gt=0)
    rate_limit_burst: int = Field(100, ge=1)
    rate_limit_clients: int = Field(10_000, ge=1)  # buckets kept at most (least recently used dropped first)
    # A request past its limit is held this long before its 429 (a flood's connections then cost the worker sleeps,
    # not CPU), for at most rate_limit_held_per_client requests of one bucket and rate_limit_held requests in all at
    # once; the others get their 429 at once. 0 = answer every 429 at once.
    rate_limit_hold_s: float = Field(1.0, ge=0, le=10)
    # A request not over after this long is ended (503 + Retry-After if unanswered): a slow body or a stuck call
    # cannot hold a connection slot for ever. null = no limit.
    request_timeout_s: float | None = Field(30.0, gt=0)
    rate_limit_held_per_client: int = Field(64, ge=0)
    rate_limit_held: int = Field(256, ge=0)
    # Records that may wait for one variant's model at once; a request past it gets 503 with Retry-After.
    max_queued_records: int = Field(4096, ge=1)
    poll_interval_s: float = Field(10.0, gt=0)
    log_flush_interval_s: float = Field(1.0, gt=0)
    log_flush_rows: int = Field(5000, ge=1)
    # While storage refuses the log: rows kept in memory at most (the oldest dropped past it, counted in /metrics) ...
    log_buffer_rows: int = Field(100_000, ge=1)
    # ... once the local spill folder (default <home>/log-spill) holds log_spill_bytes of parts it could not publish.
    log_spill_dir: Path | None = None
    log_spill_bytes: int = Field(256 << 20, ge=0)  # per log of each model (three logs a model)

    @property
    def url(self) -> str:
        """Base URL of the service."""
        return f"http://{self.host}:{self.port}"


class TeamSettings(BaseModel):
    """One team: its members' roles on the team's models, and serving keys valid for the team's models only (set
    keys through the environment only, e.g. ``AIRLOOP_SECURITY__TEAMS__CARE__PREDICT_KEY``)."""

    members: dict[Annotated[str, StringConstraints(pattern=USER_NAME_PATTERN)], Role] = {}
    api_key: str | None = None
    reload_key: str | None = None
    predict_key: str | None = None
    feedback_key: str | None = None
    history_key: str | None = None


class SecuritySettings(BaseModel):
    """Who may do what (airloop.security): Airflow users and their airloop roles; Airflow generates the passwords."""

    users: dict[Annotated[str, StringConstraints(pattern=USER_NAME_PATTERN)], Role] = {
        "viewer": Role.VIEWER,
        "scientist": Role.DATA_SCIENTIST,
        "engineer": Role.ML_ENGINEER,
        "admin": Role.ADMIN,
    }
    # The role of a <model>_registry run no signed-in user triggered (dag.test(), an asset event); None = none.
    unattributed_role: Role | None = None
    # Teams: a model whose spec names a ``team`` is acted on by that team's members, each with the role the team
    # gives them (at most their role in ``users``, which is what Airflow knows), and by admins.
    teams: dict[Annotated[str, StringConstraints(pattern=TEAM_NAME_PATTERN)], TeamSettings] = {}
    # What a user outside a model's team may do with it: viewer = see it (DAGs, monitor page), None = not even that.
    outside_team_role: Literal[Role.VIEWER] | None = Role.VIEWER
    # The team owning the model these settings are bound to: set by the model's spec (``team``), not here.
    team: Annotated[str, StringConstraints(pattern=TEAM_NAME_PATTERN)] | None = None

    @model_validator(mode="after")
    def _members_are_users(self) -> SecuritySettings:
        for name, team in self.teams.items():
            unknown = sorted(set(team.members) - set(self.users))
            if unknown:
                raise ValueError(f"security.teams.{name}.members names {unknown}, who are not in security.users")
        return self


class ModelsSettings(BaseModel):
    """Where the model specs are and which of them a process uses."""

    folder: Path = Path("models")  # one <name>.yaml (or <name>/spec.yaml) per model
    default: str | None = None  # the model of settings that name none, and of /v1/predict
    serve: list[str] | None = None  # the models the prediction service hosts; None = every valid spec


class AirflowSettings(BaseModel):
    """How the demo runs Airflow standalone and reaches its REST API."""

    host: str = "127.0.0.1"
    port: int = Field(8080, gt=0, lt=65536)
    parallelism: int = Field(4, ge=1)
    run_timeout_s: int = Field(900, gt=0)
    # Every airloop task: retries after a retryable error, and a factor on each DAG's first retry delay (doubling
    # after that); a FinalError is never retried.
    retries: int = Field(2, ge=0)
    retry_delay_scale: float = Field(1.0, gt=0)
    dags_folder: Path = Path("dags")
    plugins_folder: Path = Path("plugins")

    @property
    def url(self) -> str:
        """Base URL of the API server (UI and REST API v2)."""
        return f"http://{self.host}:{self.port}"


class Settings(BaseSettings):
    """Everything airloop reads from configuration."""

    # An environment variable set to "null" is None (e.g. AIRLOOP_SECURITY__OUTSIDE_TEAM_ROLE=null).
    model_config = SettingsConfigDict(
        env_prefix="AIRLOOP_", env_nested_delimiter="__", extra="ignore", env_parse_none_str="null"
    )
    _given: dict[str, Any] = PrivateAttr(default_factory=dict)  # what the constructor was given, for for_model

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self._given = {k: v for k, v in values.items() if k != "model"}

    home: Path = Path(".airloop")
    # The model these settings are bound to: its spec's sections are layered over the platform defaults below
    # (environment variables still win). None = ``models.default``.
    model: str | None = None
    models: ModelsSettings = ModelsSettings()
    storage: StorageSettings = StorageSettings()
    data: DataSettings = DataSettings()
    quality: QualitySettings = QualitySettings()
    airflow: AirflowSettings = AirflowSettings()
    mlflow: MlflowSettings = MlflowSettings()
    training: TrainingSettings = TrainingSettings()
    serving: ServingSettings = ServingSettings()
    ledger: LedgerSettings = LedgerSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    loop: LoopSettings = LoopSettings()
    batch: BatchSettings = BatchSettings()
    security: SecuritySettings = SecuritySettings()

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        # Relative paths mean "from the working directory", resolved once so later chdir calls change nothing.
        self.home = self.home.expanduser().resolve()
        self.serving.routing_file = (self.serving.routing_file or packaged_config(ROUTING_FILE)).expanduser().resolve()
        self.airflow.dags_folder = self.airflow.dags_folder.expanduser().resolve()
        self.airflow.plugins_folder = self.airflow.plugins_folder.expanduser().resolve()
        self.models.folder = self.models.folder.expanduser().resolve()
        if self.data.path is not None:
            self.data.path = self.data.path.expanduser().resolve()
        self.data.access.file_roots = [
            root.expanduser().resolve() for root in self.data.access.file_roots or [self.home / "incoming"]
        ]
        if self.storage.url and not urlparse(self.storage.url).scheme:
            self.storage.url = Path(self.storage.url).expanduser().resolve().as_posix()
        return self

    @property
    def storage_url(self) -> str:
        """The runtime root as a URL: ``storage.url``, or the local ``home`` folder when that is unset."""
        return self.storage.url or self.home.as_posix()

    @property
    def catalog(self) -> Catalog:
        """Every model spec in ``models.folder`` (valid ones by name, broken ones with their errors)."""
        from airloop.spec import catalog

        return catalog(self.models.folder)

    @property
    def spec(self) -> ModelSpec:
        """The spec of the model these settings are bound to."""
        from airloop.spec import SpecError
        from airloop.spec.loader import find

        if not self.model:
            raise SpecError(self.models.folder, ["no model: set models.default or AIRLOOP_MODEL, or name one"])
        return find(self.models.folder, self.model)

    def for_model(self, name: str) -> Settings:
        """These settings' sources, and the values they were constructed with, bound to the model ``name`` instead
        (its spec layered over the defaults); the process-wide ``get_settings(name)`` when they were given none."""
        if not self._given:
            return get_settings(name)
        return type(self)(**self._given, model=name)

    @property
    def layout(self) -> RuntimeLayout:
        """Where datasets, quarantine, Data Docs, reports, logs and staging live under the runtime root."""
        from airloop.storage import RuntimeLayout, Storage, s3_options

        cfg = self.storage
        remote = urlparse(self.storage_url).scheme == "s3"
        s3 = s3_options(cfg.s3_endpoint_url, cfg.s3_region, cfg.s3_conn_id) if remote else None
        return RuntimeLayout(Storage.from_url(self.storage_url, s3), self.model or "")

    @property
    def ledger_url(self) -> str:
        """SQLAlchemy URL of the decision ledger (SQLite under ``home`` unless configured)."""
        return self.ledger.url or f"sqlite:///{self.home / 'ledger.db'}"

    @property
    def dataset_asset(self) -> str:
        """Name of the Airflow Asset that the model's <model>_etl emits and its <model>_train takes as an inlet."""
        return f"airloop_{self.data.dataset_name}_dataset"

    @property
    def airflow_home(self) -> Path:
        """AIRFLOW_HOME of the demo's Airflow standalone (SQLite metadata DB, logs, generated password)."""
        return self.home / "airflow"

    @property
    def mlflow_dir(self) -> Path:
        """Embedded MLflow store: SQLite backend and local artifacts."""
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI (embedded SQLite under ``home`` unless configured)."""
        return self.mlflow.tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        """MLflow model registry URI (the tracking store unless configured)."""
        return self.mlflow.registry_uri or self.tracking_uri

    @property
    def artifact_location(self) -> str | None:
        """Where new experiments store artifacts: as configured; else a local folder under ``home`` with the embedded
        store, and None (the tracking server's own artifact store, e.g. S3 behind ``--artifacts-destination``) with a
        tracking server."""
        if self.mlflow.artifact_location:
            return self.mlflow.artifact_location
        if urlparse(self.tracking_uri).scheme in ("http", "https"):
            return None
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def logs_dir(self) -> Path:
        """Logs of the processes the demo starts."""
        return self.home / "logs"

    @property
    def gx_dir(self) -> Path:
        """Local Great Expectations project: suites, validation results, the Data Docs site as built."""
        return self.home / "gx"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = CachedYamlSource(settings_cls, yaml_file=config_file())
        spec_source = SpecSettingsSource(settings_cls, init_settings, env_settings, yaml_source)
        return init_settings, env_settings, spec_source, yaml_source


def _merged(*layers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def spec_sections(spec: ModelSpec) -> dict[str, Any]:
    """What a model's spec sets in the settings: its names, data source, training, thresholds and limits."""
    training = spec.training.model_dump(exclude_none=True)
    quality = spec.quality.model_dump(include={"min_rows", "max_rows"}, exclude_none=True)
    return {
        "model": spec.name,
        "data": {**spec.data.source.model_dump(exclude_none=True), "dataset_name": spec.dataset_name},
        "quality": quality,
        "mlflow": {"model_name": spec.registered_model, "experiment": spec.experiment},
        "training": training,
        "monitoring": {**spec.monitoring, "retrain_dag_id": spec.dag_id("retrain")},
        "loop": dict(spec.loop),
        "serving": dict(spec.serving),
        "batch": dict(spec.batch),
        "security": {"team": spec.team},
    }


class SpecSettingsSource(PydanticBaseSettingsSource):
    """The bound model's spec, between the environment (which wins) and the platform defaults file (which it wins)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        init: PydanticBaseSettingsSource,
        env: PydanticBaseSettingsSource,
        defaults: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self._init, self._env, self._defaults = init, env, defaults

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        from airloop.spec import SpecError
        from airloop.spec.loader import find

        init = self._init.init_kwargs if isinstance(self._init, InitSettingsSource) else {}
        env, defaults = self._env(), self._defaults()
        models = _merged(defaults.get("models") or {}, env.get("models") or {}, init.get("models") or {})
        explicit = init.get("model") or env.get("model")
        name = explicit or models.get("default")
        if not name:
            return {}
        folder = Path(models.get("folder") or "models").expanduser().resolve()
        if explicit:
            return spec_sections(find(folder, name))  # an explicitly named model must exist and be valid
        try:
            return spec_sections(find(folder, name))  # only its own file is read, not the whole folder
        except SpecError:
            return {"model": name}  # the default model's spec is absent or broken here


@lru_cache
def get_settings(model: str | None = None) -> Settings:
    """The process-wide settings of ``model`` (the default model when None), read once per model; tests call
    ``get_settings.cache_clear()`` after changing the env."""
    return Settings(model=model) if model else Settings()
