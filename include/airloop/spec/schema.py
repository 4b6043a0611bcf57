"""The typed model spec: everything that is specific to one model, validated before any DAG or service uses it.

A spec is one YAML file (``models/<name>.yaml``) read by ``airloop.spec.loader``. Nothing in the platform knows a
model by name: the DAG factory, training, serving, monitoring and the loop read what they need from here. What YAML
cannot say (a feature transform, a calibrated generator, extra checks) is named as a Python entry point
(``package.module:attribute``), so it travels with the spec, not with the platform.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from airloop.security import TEAM_NAME_PATTERN

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,40}$"
#: The DAGs every model gets, ``<name>_<stage>`` (built by ``airloop.dag_factory``).
STAGES = ("etl", "train", "drift", "retrain", "ab_evaluate", "registry", "batch_score")
ENTRY_POINT_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
EXPECTATION_PATTERN = r"^expect_[a-z0-9_]+$"

ModelName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
EntryPoint = Annotated[str, StringConstraints(pattern=ENTRY_POINT_PATTERN)]
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """One raw column as the source has it."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    type: Literal["integer", "float", "string", "category"]
    nullable: bool = False  # may hold a missing marker (or null); False = always recorded
    values: list[Scalar] | None = None  # closed value set (category; integer ids)
    min: float | None = None  # inclusive range of a number
    max: float | None = None
    pattern: str | None = None  # a regular expression every recorded string matches
    description: str = ""
    # Synthetic data derived from the schema: relative frequency of each of ``values`` (default equal), and the mean
    # and spread of a number (default: the middle of [min, max] and a sixth of it).
    weights: list[Annotated[float, Field(ge=0)]] | None = None
    mean: float | None = None
    std: float | None = Field(None, gt=0)
    missing_share: float = Field(0.0, ge=0, lt=1)  # share of generated values that are missing (nullable only)
    effect: float = 0.0  # strength of this column in the generated target (signed); 0 = no signal

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.type == "category" and not self.values:
            raise ValueError("a category column needs its `values`")
        if self.weights is not None and (self.values is None or len(self.weights) != len(self.values)):
            raise ValueError("`weights` needs one weight per entry of `values`")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"`min` {self.min} is above `max` {self.max}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"`pattern` is not a regular expression: {error}") from error
        if self.missing_share and not self.nullable:
            raise ValueError("`missing_share` needs `nullable: true`")
        return self


class RowFilter(_Strict):
    """Rows kept for publication: those whose ``column`` is not in ``not_in`` (and is in ``in`` when given)."""

    column: str
    not_in: list[Scalar] = []
    in_: list[Scalar] | None = Field(None, alias="in")
    reason: str = ""


class TargetSpec(_Strict):
    """The binary target: 1 where the raw ``column`` holds one of ``positive``, stored as ``name``."""

    column: str
    positive: list[Scalar] = Field(min_length=1)
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    delay_days: float = Field(0.0, ge=0)  # how long after a prediction its outcome arrives
    description: str = ""


class DriftSpec(_Strict):
    covariate: float = Field(0.0, ge=0, le=3)
    concept: float = Field(0.0, ge=0, le=3)


class SourceSpec(_Strict):
    """Where raw records come from (``data`` settings of this model); every key is a default a DAG param overrides."""

    source: Literal["synthetic", "file", "s3", "postgres"] = "synthetic"
    path: str | None = None
    s3_uri: str | None = None
    s3_conn_id: str | None = None
    postgres_conn_id: str | None = None
    postgres_table: str | None = None
    synthetic_rows: int | None = Field(None, gt=0)
    synthetic_seed: int | None = None
    drift: DriftSpec | None = None


class DataSpec(_Strict):
    """The raw records: source, schema, identity, filters and target."""

    description: str = ""
    source: SourceSpec = SourceSpec()
    missing_markers: list[str] = []  # strings that mean "not recorded" (besides null)
    columns: list[ColumnSpec] = Field(min_length=2)
    key: str  # unique id of one record
    entity: str  # who a record is about: sticky routing, group-aware split, per-entity history
    event_time: str | None = None
    filters: list[RowFilter] = []
    target: TargetSpec
    # A callable(n_rows, seed, covariate_drift, concept_drift) -> raw frame; None = derived from the schema.
    generator: EntryPoint | None = None

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: list[ColumnSpec]) -> list[ColumnSpec]:
        seen: set[str] = set()
        for column in columns:
            if column.name in seen:
                raise ValueError(f"column {column.name!r} is listed twice")
            seen.add(column.name)
        return columns

    @model_validator(mode="after")
    def _known_columns(self) -> DataSpec:
        names = {c.name for c in self.columns}
        for field, column in [("key", self.key), ("entity", self.entity), ("target.column", self.target.column)]:
            if column not in names:
                raise ValueError(f"`{field}` names {column!r}, which is not one of `columns`")
        if self.event_time is not None and self.event_time not in names:
            raise ValueError(f"`event_time` names {self.event_time!r}, which is not one of `columns`")
        for row_filter in self.filters:
            if row_filter.column not in names:
                raise ValueError(f"a filter names {row_filter.column!r}, which is not one of `columns`")
        if self.target.name in names:
            raise ValueError(f"`target.name` {self.target.name!r} is already a raw column")
        return self

    def column(self, name: str) -> ColumnSpec:
        """The column called ``name``."""
        return next(c for c in self.columns if c.name == name)

    @property
    def raw_columns(self) -> list[str]:
        """The raw columns in the source's order."""
        return [c.name for c in self.columns]

    @property
    def id_columns(self) -> list[str]:
        """The key and the entity (in that order, once each)."""
        return list(dict.fromkeys([self.key, self.entity]))

    @property
    def integer_columns(self) -> list[str]:
        """Columns read as int64 when every value is an integer."""
        return [c.name for c in self.columns if c.type == "integer"]

    @property
    def input_columns(self) -> list[str]:
        """What a model takes: every raw column but the target's, in order."""
        return [c for c in self.raw_columns if c != self.target.column]


class ExpectationSpec(_Strict):
    """One extra Great Expectations expectation, by GE's own name and arguments."""

    type: Annotated[str, StringConstraints(pattern=EXPECTATION_PATTERN)]
    kwargs: dict[str, Any] = {}


class QualitySpec(_Strict):
    """The suites are derived from the schema; these are added to them (and the batch bounds)."""

    min_rows: int | None = Field(None, ge=1)
    max_rows: int | None = Field(None, ge=1)
    raw: list[ExpectationSpec] = []
    features: list[ExpectationSpec] = []
    # A callable(QualitySettings) -> list of GE expectations, for checks YAML cannot say.
    raw_extra: EntryPoint | None = None
    features_extra: EntryPoint | None = None
    # A callable(published frame) -> the frame the features suite checks; None = ids, the model's features, target.
    features_frame: EntryPoint | None = None


class NumericFeature(_Strict):
    column: str
    impute: Literal["median", "mean", "zero"] = "median"


class CategoricalFeature(_Strict):
    column: str
    min_frequency: int = Field(20, ge=1)  # rarer levels are pooled into one


class OrdinalFeature(_Strict):
    column: str
    order: list[Scalar] = Field(min_length=2)  # values low to high; anything else is missing


class CodeGroupFeature(_Strict):
    """A code column grouped by prefix and numeric range (e.g. ICD-9 chapters), the group a category."""

    column: str
    name: str | None = None  # default <column>_group
    prefixes: dict[str, list[str]] = {}
    ranges: dict[str, list[tuple[float, float]]] = {}
    default: str = "other"


class SumFeature(_Strict):
    name: str
    columns: list[str] = Field(min_length=1)


class CountFeature(_Strict):
    """How many of ``columns`` hold one of ``values`` (or, with ``not_values``, anything else)."""

    name: str
    columns: list[str] = Field(min_length=1)
    values: list[Scalar] = []
    not_values: list[Scalar] = []


class FeaturesSpec(_Strict):
    """The record -> features transform: declarative, or a scikit-learn transformer named by entry point."""

    transformer: EntryPoint | None = None
    numeric: list[NumericFeature] = []
    categorical: list[CategoricalFeature] = []
    ordinal: list[OrdinalFeature] = []
    code_groups: list[CodeGroupFeature] = []
    sums: list[SumFeature] = []
    counts: list[CountFeature] = []

    @model_validator(mode="after")
    def _some_features(self) -> FeaturesSpec:
        declared = self.numeric or self.categorical or self.ordinal or self.code_groups or self.sums or self.counts
        if self.transformer and declared:
            raise ValueError("give either `transformer` or declarative features, not both")
        if not self.transformer and not declared:
            raise ValueError("no features: list some (numeric, categorical, ordinal, ...) or name a `transformer`")
        return self

    def declared_names(self) -> list[str]:
        """The names of the model features the declarative transform makes (empty with a ``transformer``)."""
        names = [f.column for group in (self.numeric, self.categorical, self.ordinal) for f in group]
        names += [f.name or f"{f.column}_group" for f in self.code_groups]
        return names + [f.name for f in (*self.sums, *self.counts)]

    def referenced_columns(self) -> list[str]:
        """Raw columns the declarative features read."""
        out = [f.column for group in (self.numeric, self.categorical, self.ordinal, self.code_groups) for f in group]
        out += [c for f in (*self.sums, *self.counts) for c in f.columns]
        return list(dict.fromkeys(out))


class SearchParam(_Strict):
    """One hyperparameter's range: ``low``..``high`` (``log`` scale, ``integer``) or a list of ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Scalar] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchParam:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give `low` and `high`, or `choices`")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"`low` {self.low} is above `high` {self.high}")
        return self


#: Trials per kind of a search that gives neither ``budget`` nor ``minutes``.
DEFAULT_SEARCH_TRIALS = 4


class SearchSpec(_Strict):
    """A search per kind of ``space``: Optuna's TPE sampler (seeded by the training seed) draws the trials, each
    scored on ``folds`` group folds of the training rows and pruned (``pruner``) when its first folds lag; a kind
    stops after ``budget`` trials or ``minutes`` of wall time, whichever comes first (4 trials when neither is
    given); with ``warm_start`` the champion's parameters are its kind's first trial."""

    budget: int | None = Field(None, ge=1, le=1000)  # trials per kind (the champion's warm start counts as one)
    minutes: float | None = Field(None, gt=0, le=24 * 60)  # wall time per kind; a trial started is finished
    space: dict[Literal["hist_gradient_boosting", "logistic_regression"], dict[str, SearchParam]]
    folds: int = Field(3, ge=2, le=10)  # group folds (by the entity) of the training rows, reported one by one
    pruner: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(5, ge=0, le=1000)  # TPE's random draws before it models the space; no pruning before
    warm_start: bool = True  # the champion's parameters first, when its kind is searched

    @property
    def max_trials(self) -> int | None:
        """Trials per kind: ``budget``; else 4 without ``minutes``; else no count limit (the clock stops it)."""
        if self.budget is not None:
            return self.budget
        return None if self.minutes is not None else DEFAULT_SEARCH_TRIALS


class TrainingSpec(_Strict):
    """Candidates, search, gate and split of this model; unset keys take the platform's ``training`` defaults."""

    seed: int | None = None
    test_size: float | None = Field(None, gt=0, lt=1)
    validation_size: float | None = Field(None, gt=0, lt=1)
    metric: Literal["roc_auc", "pr_auc", "log_loss", "brier", "f1"] | None = None
    margin: float | None = None
    candidates: dict[Literal["hist_gradient_boosting", "logistic_regression"], list[dict[str, Scalar]]] | None = None
    search: SearchSpec | None = None
    importance_rows: int | None = Field(None, ge=100)


class GroupSpec(_Strict):
    """A group of records the model is judged on one by one: the values of a raw ``column``, or named ``bands`` of
    them (e.g. ten-year age buckets merged into wider bands). Values no band lists, and values outside the column's
    value set, are "other"; a missing value is "missing"."""

    column: str
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")] | None = None  # default column
    bands: dict[str, list[Scalar]] | None = None

    @property
    def label(self) -> str:
        """The group's name in reports, metrics and reasons."""
        return self.name or self.column


class OperatingPointSpec(_Strict):
    """How a version's threshold (probability at or above which its class is 1) is chosen on the validation rows:
    ``f1`` (F1-optimal), ``recall`` (the highest threshold that catches ``target`` of the positives) or ``alert_rate``
    (the lowest threshold that flags at most ``target`` of the records)."""

    kind: Literal["f1", "recall", "alert_rate"] = "f1"
    target: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _target_when_needed(self) -> OperatingPointSpec:
        if self.kind == "f1" and self.target is not None:
            raise ValueError("`target` is for kind `recall` or `alert_rate`, not `f1`")
        if self.kind != "f1" and self.target is None:
            raise ValueError(f"kind `{self.kind}` needs a `target` between 0 and 1")
        return self


class EvaluationSpec(_Strict):
    """How a version is judged beyond one pooled metric: per group of records, and at which operating point.

    The gate and the A/B evaluation refuse a candidate worse than the champion in any group with at least
    ``min_rows`` labelled rows by more than ``tolerance`` on ``metric`` beyond doubt: the difference's whole interval
    (Bonferroni over the groups judged, at ``level``) below ``-tolerance`` (``airloop.groups``)."""

    groups: list[GroupSpec] = []
    metric: Literal["roc_auc", "log_loss", "brier"] = "roc_auc"
    tolerance: float = Field(0.02, ge=0, le=1)
    min_rows: int = Field(200, ge=20)
    level: float = Field(0.95, gt=0.5, lt=1)
    operating_point: OperatingPointSpec = OperatingPointSpec()

    @field_validator("groups")
    @classmethod
    def _unique_labels(cls, groups: list[GroupSpec]) -> list[GroupSpec]:
        labels = [g.label for g in groups]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"groups {twice} are listed twice (give each a distinct `name`)")
        return groups


class ModelSpec(_Strict):
    """One model: its data, quality, features, training and per-model overrides of the platform defaults."""

    name: ModelName
    description: str = ""
    owner: str = ""
    # The team that owns the model (``security.teams``): only its members, and admins, act on it.
    team: Annotated[str, StringConstraints(pattern=TEAM_NAME_PATTERN)] | None = None
    tags: list[str] = []
    data: DataSpec
    quality: QualitySpec = QualitySpec()
    features: FeaturesSpec
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    # Per-model overrides of the platform sections of config/airloop.yaml (same keys; checked against them).
    monitoring: dict[str, Any] = {}
    loop: dict[str, Any] = {}
    serving: dict[str, Any] = {}
    batch: dict[str, Any] = {}

    @model_validator(mode="after")
    def _features_read_known_columns(self) -> ModelSpec:
        names = set(self.data.raw_columns)
        for column in self.features.referenced_columns():
            if column not in names:
                raise ValueError(f"`features` reads {column!r}, which is not one of `data.columns`")
            if column == self.data.target.column:
                raise ValueError(f"`features` reads the target column {column!r}")
        return self

    @model_validator(mode="after")
    def _groups_are_columns(self) -> ModelSpec:
        """``evaluation.groups`` name raw columns (never the target), and bands list values the column can hold."""
        for group in self.evaluation.groups:
            if group.column not in self.data.raw_columns:
                raise ValueError(f"`evaluation.groups` names {group.column!r}, which is not one of `data.columns`")
            if group.column == self.data.target.column:
                raise ValueError(f"`evaluation.groups` names the target column {group.column!r}")
            values = self.data.column(group.column).values
            for band, members in (group.bands or {}).items():
                unknown = [v for v in members if values is not None and v not in values]
                if unknown:
                    raise ValueError(
                        f"`evaluation.groups` band {band!r} of {group.column!r} lists {unknown}, not among its `values`"
                    )
        return self

    @model_validator(mode="after")
    def _segments_are_features(self) -> ModelSpec:
        """``monitoring.segments`` names model features; a declarative model's are known here (a transformer's only
        once it runs: the drift report then lists the segments it found)."""
        segments = self.monitoring.get("segments", [])
        if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
            raise ValueError(f"`monitoring.segments` must be a list of feature names, got {segments!r}")
        known = self.features.declared_names()
        unknown = [s for s in segments if known and s not in known]
        if unknown:
            raise ValueError(f"`monitoring.segments` names {unknown}, which are not among the model's features {known}")
        return self

    # Names derived from the model's name: two models never share one.
    @property
    def dataset_name(self) -> str:
        """Published dataset name (folder under ``<storage>/datasets`` and the Airflow Asset)."""
        return self.name

    @property
    def registered_model(self) -> str:
        """The registered model in MLflow."""
        return self.name

    @property
    def experiment(self) -> str:
        """The MLflow experiment of its training runs."""
        return self.name

    def dag_id(self, stage: str) -> str:
        """``<name>_<stage>``: the id of one of its DAGs (etl, train, drift, retrain, ab_evaluate, registry,
        batch_score)."""
        return f"{self.name}_{stage}"

    def dag_ids(self) -> dict[str, str]:
        """Every DAG id of the model, by stage."""
        return {stage: self.dag_id(stage) for stage in STAGES}

    @property
    def asset_name(self) -> str:
        """The Airflow Asset its ETL emits."""
        return f"airloop_{self.dataset_name}_dataset"
