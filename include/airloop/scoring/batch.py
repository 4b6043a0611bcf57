"""Batch scoring (``<model>_batch_score``): a whole input scored by one registered model version, chunk by chunk.

The input is a published dataset version, or the configured file, S3 object, PostgreSQL table or generator
(``airloop.data.sources.iter_raw``); it is read ``batch.chunk_rows`` records at a time, so memory is bounded by the
chunk whatever the input's size. Each chunk is scored by the model's compiled fast path (the one serving uses,
``CompiledPipeline.predict_proba_frame``: the registered Pipeline's probabilities without its per-call overhead) and
written as one Parquet part; the parts, the rejected records and ``metadata.json`` are published as one folder under
``<storage>/batch-scores/<dataset>/<job>/`` (``Storage.publishing``: readers see all of it or nothing).

With ``explain_top`` N (a DAG param), each row also gets its base value, its score in log-odds and its top N risk
factors by the same version (``airloop.explanations``), in an output of its own (``...-topN``).

A record that cannot be scored (a count that is not an integer, an age bucket the model does not know) is not dropped:
it goes to ``rejected-*.parquet`` with its fields and the reason. The job's lineage (input and its version → model
version → output) is one run of the MLflow experiment ``<experiment>-batch-scoring``.

``resolve`` fixes what a run scores (input, model version, output name) on its first attempt; ``score`` and
``record_lineage`` are idempotent: a retry, or another run of the same dataset version with the same model version,
finds the published output and its MLflow run and writes nothing again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from airloop.errors import FinalError
from airloop.registry.contract import TAG_PREFIX, Alias
from airloop.storage import folder_name

if TYPE_CHECKING:
    from airloop.settings import Settings
    from airloop.storage import Storage

log = logging.getLogger(__name__)

DATASET = "dataset"
SOURCES = (DATASET, "file", "s3", "postgres", "synthetic")
EXPERIMENT_SUFFIX = "-batch-scoring"
METADATA_FILE = "metadata.json"
ARTIFACT_DIR = "batch_scores"
SCORE_COLUMNS = ("probability", "predicted_class", "model_version")
EXPLANATION_COLUMNS = ("base_value", "score", "factors")  # with explain_top: log-odds, the top factors
MAX_EXPLAIN_TOP = 50
REASON = "reason"

TAG_OUTPUT = f"{TAG_PREFIX}batch_output"
TAG_OUTPUT_URL = f"{TAG_PREFIX}batch_output_url"
TAG_MODEL_NAME = f"{TAG_PREFIX}model_name"
TAG_MODEL_VERSION = f"{TAG_PREFIX}model_version"
TAG_INPUT = f"{TAG_PREFIX}batch_input"
TAG_AIRFLOW_RUN = f"{TAG_PREFIX}airflow_run_id"


class BatchInputError(FinalError, ValueError):
    """The job cannot be scored as asked (unknown source or model version, a column the model needs is absent)."""


@dataclass(frozen=True)
class Job:
    """What one <model>_batch_score run scores, fixed on its first attempt (a retry scores the same)."""

    source: str
    input_uri: str
    input_version: str | None
    data: dict[str, Any]
    model_name: str
    model_version: str
    model_alias: str | None
    output: str
    output_url: str
    chunk_rows: int
    airflow_run_id: str
    explain_top: int = 0


def part_name(index: int) -> str:
    """The Parquet file of the ``index``-th chunk's predictions."""
    return f"part-{index:05d}.parquet"


def rejected_name(index: int) -> str:
    """The Parquet file of the ``index``-th chunk's records that could not be scored."""
    return f"rejected-{index:05d}.parquet"


def output_storage(settings: Settings) -> Storage:
    """Where every batch-scoring output of the configured dataset is published."""
    return settings.layout.batch_scores(settings.data.dataset_name)


def experiment_name(settings: Settings) -> str:
    """The MLflow experiment that holds one lineage run per batch-scoring output."""
    return f"{settings.mlflow.experiment}{EXPERIMENT_SUFFIX}"


def _text(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    return None if value in (None, "") else str(value)


def _input(
    settings: Settings, params: Mapping[str, Any], run_id: str, user: str | None
) -> tuple[str, str, str | None, dict, str]:
    """(source, input URI, input version, data settings, output stem) of the job's parameters."""
    from airloop.data import access
    from airloop.data.sources import describe_source
    from airloop.data.store import DatasetNotFound, dataset_store

    source = _text(params, "source") or DATASET
    if source not in SOURCES:
        raise BatchInputError(f"source: {source!r} is not one of {list(SOURCES)}")
    if source == DATASET:
        store = dataset_store(settings)
        version = _text(params, "dataset_version") or store.latest()
        if version is None:
            raise BatchInputError(
                f"dataset_version: no dataset published at {store.url()}: run {settings.spec.dag_id('etl')} first"
            )
        if not store.exists(version):
            raise DatasetNotFound(f"dataset_version: {version!r} is not published at {store.url()}")
        # A dataset version never changes: the same version and model make the same output, whichever run asks.
        return source, store.url(version), version, {}, f"{DATASET}-{version}"
    params = {**params, **access.check(settings, params, user)}  # read exactly what was checked
    overrides = {key: params[key] for key in access.LOCATION_PARAMS if _text(params, key)}
    data = settings.data.model_copy(update={"source": source, **overrides})
    # The same source may hold other rows tomorrow: each run is its own output.
    return source, describe_source(data), None, data.model_dump(mode="json"), f"{source}-{folder_name(run_id)}"


def resolve(settings: Settings, params: Mapping[str, Any], run_id: str, user: str | None = None) -> dict[str, Any]:
    """Fix the job of a run: the input (the latest dataset version when none is named), the model version (the
    champion's when none is named), the output's name and URL and the chunk size.

    Raises:
        BatchInputError: an unknown source, model version or alias without a version, a chunk size below 1.
        DatasetNotFound: the named dataset version is not published.
        SourceRefused: ``path``, ``s3_uri`` or ``postgres_table`` is outside ``data.access`` (for ``user``, who
            triggered the run).
    """
    from mlflow.exceptions import MlflowException

    from airloop.registry.aliases import alias_version
    from airloop.registry.client import connect

    source, uri, version, data, stem = _input(settings, params, run_id, user)
    client = connect(settings)
    name = settings.mlflow.model_name
    model_version, alias = _text(params, "model_version"), None
    if model_version is None:
        alias = Alias.CHAMPION.value
        model_version = alias_version(client, name, alias)
        if model_version is None:
            raise BatchInputError(f"model_version: model {name!r} has no {alias!r} version to score with")
    try:
        client.get_model_version(name, model_version)
    except MlflowException as missing:
        raise BatchInputError(f"model_version: {name!r} has no version {model_version!r}") from missing
    chunk_rows = int(params.get("chunk_rows") or settings.batch.chunk_rows)
    if chunk_rows < 1:
        raise BatchInputError(f"chunk_rows: must be at least 1, got {chunk_rows}")
    explain_top = int(params.get("explain_top") or 0)
    if not 0 <= explain_top <= MAX_EXPLAIN_TOP:
        raise BatchInputError(f"explain_top: must be between 0 and {MAX_EXPLAIN_TOP}, got {explain_top}")
    # An explained output has more columns than a plain one: it is another output of the same input and version.
    output = f"{stem}--{folder_name(name)}-v{model_version}" + (f"-top{explain_top}" if explain_top else "")
    job = Job(
        source,
        uri,
        version,
        data,
        name,
        str(model_version),
        alias,
        output,
        output_storage(settings).url(output),
        chunk_rows,
        run_id,
        explain_top,
    )
    log.info("batch job: %s (%s) with %s v%s -> %s", uri, source, name, model_version, job.output_url)
    return asdict(job)


# --- reading ----------------------------------------------------------------------------------------------------


def _dataset_chunks(settings: Settings, version: str, chunk_rows: int, columns: list[str]) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    from airloop.data.store import DATA_FILE, dataset_store

    storage = dataset_store(settings).storage
    with storage.fs.open_input_file(storage.path(version, DATA_FILE)) as handle:
        parquet = pq.ParquetFile(handle)
        present = set(parquet.schema_arrow.names)
        _require_columns([c for c in columns if c not in present], storage.url(version, DATA_FILE))
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()


def chunks(settings: Settings, job: Mapping[str, Any], columns: list[str]) -> Iterator[pd.DataFrame]:
    """The job's input, ``job["chunk_rows"]`` records at a time (a dataset version: only ``columns`` are read)."""
    if job["source"] == DATASET:
        yield from _dataset_chunks(settings, job["input_version"], job["chunk_rows"], columns)
        return
    from airloop.data.sources import iter_raw
    from airloop.settings import DataSettings

    yield from iter_raw(DataSettings.model_validate(job["data"]), settings.spec, job["chunk_rows"])


def _require_columns(missing: list[str], where: str) -> None:
    if missing:
        raise BatchInputError(f"{where} lacks the column(s) the model needs: {', '.join(missing)}")


# --- validating and scoring -------------------------------------------------------------------------------------


_INTEGER_TEXT = r"[+-]?\d{1,18}"  # 18 digits always fit int64; no float, exponent or decimal point on the way
_EXACT_FLOAT = 2.0**53  # beyond it a float no longer holds every integer


def _integers(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the column as int64, 0 where a value is not an integer; where a value is not one).

    Missing values, text that is not plain decimal digits (``"1e3"``, ``"12.0"``, ``"inf"``, more than 18 digits) and
    floats that are not exact integers are not integers. Nothing goes through a float that could round an id.
    """
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        bad = pd.Series(True, index=column.index)
        return pd.Series(0, index=column.index, dtype="int64"), bad
    if pd.api.types.is_integer_dtype(dtype):
        bad = column.isna()
        return column.where(~bad, 0).astype("int64"), bad
    if pd.api.types.is_float_dtype(dtype):
        values = column.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            exact = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < _EXACT_FLOAT)
        bad = pd.Series(~exact, index=column.index)
        return pd.Series(np.where(exact, values, 0).astype("int64"), index=column.index), bad
    text = column.astype("str").str.strip()
    bad = column.isna() | ~text.str.fullmatch(_INTEGER_TEXT).fillna(False).astype(bool)
    return text.where(~bad, "0").astype("int64"), bad


def output_columns(spec: Any, explained: bool = False) -> list[str]:
    """The columns of a batch output: the spec's ids, then probability, class and model version (and, explained,
    the base value, the score in log-odds and the top factors)."""
    return [*spec.data.id_columns, *SCORE_COLUMNS, *(EXPLANATION_COLUMNS if explained else ())]


def explanation_columns(explanations: list[dict[str, Any]]) -> dict[str, Any]:
    """The output columns of explained rows: base value and score (log-odds), the top factors as a list of
    ``{factor, label, contribution}`` (their contributions, the other factors' and the base add up to the score)."""
    import pyarrow as pa

    factor = pa.struct([("factor", pa.string()), ("label", pa.string()), ("contribution", pa.float64())])
    return {
        "base_value": pa.array([e["base_value"] for e in explanations], type=pa.float64()),
        "score": pa.array([e["score"] for e in explanations], type=pa.float64()),
        "factors": pa.array(
            [[{k: f[k] for k in ("factor", "label", "contribution")} for f in e["factors"]] for e in explanations],
            type=pa.list_(factor),
        ),
    }


def split_scorable(
    chunk: pd.DataFrame,
    columns: list[str],
    domains: Mapping[str, list[str]],
    integer_columns: list[str],
    where: str = "the input",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the records the model can score, as it takes them; the others with every field and the ``reason``).

    A record is refused when one of the spec's integer fields (e.g. ids, counts) is missing or not an integer, or a
    field with a closed domain (e.g. an age bucket) holds a value outside it. ``where`` names the input in the error
    raised when a column the model needs is absent (``BatchInputError``).
    """
    _require_columns([c for c in columns if c not in chunk.columns], where)
    reasons = pd.Series("", index=chunk.index, dtype=object)
    values = chunk.loc[:, columns].copy()
    for column in integer_columns:
        if column not in values.columns:
            continue
        numbers, bad = _integers(values[column])
        reasons[bad] += f"{column}: not an integer; "
        values[column] = numbers
    for column, allowed in domains.items():
        if column in values.columns:
            bad = ~values[column].isin(allowed)
            reasons[bad] += f"{column}: not one of the model's values; "
    refused = reasons.ne("")
    good = values.loc[~refused]
    rejected = chunk.loc[refused].astype("string").assign(**{REASON: reasons[refused].str.rstrip("; ")})
    return good.reset_index(drop=True), rejected.reset_index(drop=True)


@dataclass
class Scorer:
    """One loaded model version: its Pipeline, its compiled fast path (None when the shape is unknown), threshold."""

    version: str
    pipeline: Any
    compiled: Any | None
    threshold: float
    columns: list[str]
    domains: dict[str, list[str]]

    @property
    def path(self) -> str:
        """Which path scores: ``compiled`` (serving's fast path) or ``pipeline``."""
        return "compiled" if self.compiled is not None else "pipeline"

    def predict_proba(self, records: pd.DataFrame) -> np.ndarray:
        """Positive-class probability per record."""
        if self.compiled is not None:
            return self.compiled.predict_proba_frame(records)
        return self.pipeline.predict_proba(records)[:, 1] if len(records) else np.zeros(0)


def load_scorer(settings: Settings, name: str, version: str) -> Scorer:
    """Load a registered version as serving does: its Pipeline, compiled fast path, threshold and input domains."""
    from airloop.registry.aliases import version_record
    from airloop.registry.client import connect, model_uri
    from airloop.training.compiled import compile_pipeline
    from airloop.training.model_io import load_sklearn_model
    from airloop.training.record_features import feature_step

    client = connect(settings)
    pipeline = load_sklearn_model(model_uri(name, version))
    step = feature_step(pipeline)
    domains = step.input_domains() if step is not None else {}
    threshold = version_record(client, name, version).threshold
    columns = settings.spec.data.input_columns
    return Scorer(str(version), pipeline, compile_pipeline(pipeline), threshold, columns, domains)


def predictions(ids: pd.DataFrame, probability: np.ndarray, scorer: Scorer, integer_ids: list[str]) -> Any:
    """The output table of one chunk: ids (int64 where the spec says integer), probability, class at the version's
    threshold, model version."""
    import pyarrow as pa

    def id_array(column: str) -> Any:
        values = ids[column]
        return pa.array(values.to_numpy(dtype="int64")) if column in integer_ids else pa.array(values.astype(str))

    return pa.table(
        {
            **{c: id_array(c) for c in ids.columns},
            "probability": pa.array(probability, type=pa.float64()),
            "predicted_class": pa.array((probability >= scorer.threshold).astype("int8")),
            "model_version": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(len(probability), dtype="int32")), pa.array([scorer.version])
            ),
        }
    )


def score(settings: Settings, job: Mapping[str, Any]) -> dict[str, Any]:
    """Score the job's input chunk by chunk and publish the output folder; the published metadata.

    Idempotent: when the output is already published (a retry, or the same dataset version and model scored before)
    nothing is read or written and its metadata is returned with ``created`` False.
    """
    storage = output_storage(settings)
    if storage.is_published(job["output"]):
        log.info("batch output %s is already published: nothing to score", job["output_url"])
        return {**storage.read_json(job["output"], METADATA_FILE), "created": False}
    started = time.perf_counter()
    scorer = load_scorer(settings, job["model_name"], job["model_version"])
    data = settings.spec.data
    columns = [*dict.fromkeys([*data.id_columns, *scorer.columns])]
    rows = rejected = positives = chunks_read = 0
    probability_sum, scoring_s, checking_s, explaining_s = 0.0, 0.0, 0.0, 0.0
    explain_top = int(job.get("explain_top") or 0)
    explainer = None
    if explain_top:
        from airloop.explanations import Explainer

        explainer = Explainer.of(scorer.pipeline, scorer.compiled)  # once per job: the version that scores
    # On an object store an earlier attempt's objects stay, invisible, where this one publishes: remove them, or a
    # part this attempt does not write (fewer chunks) would be listed in its manifest. One run at a time writes here
    # (the DAG's max_active_runs=1; a retry never overlaps its own attempt).
    storage.delete(job["output"])
    try:
        with storage.publishing(job["output"]) as folder:
            for index, chunk in enumerate(chunks(settings, job, columns)):
                began = time.perf_counter()
                good, refused = split_scorable(chunk, columns, scorer.domains, data.integer_columns, job["input_uri"])
                checking_s += time.perf_counter() - began
                began = time.perf_counter()
                probability = scorer.predict_proba(good.loc[:, scorer.columns])
                scoring_s += time.perf_counter() - began
                table = predictions(good.loc[:, data.id_columns], probability, scorer, data.integer_columns)
                if explainer is not None:
                    began = time.perf_counter()
                    explained = explainer.explain_frame(good.loc[:, scorer.columns], explain_top)
                    for column, values in explanation_columns(explained).items():
                        table = table.append_column(column, values)
                    explaining_s += time.perf_counter() - began
                folder.write_table(table, part_name(index))
                if len(refused):
                    folder.write_parquet(refused, rejected_name(index))
                rows += len(good)
                rejected += len(refused)
                positives += int(table["predicted_class"].to_numpy().sum())
                probability_sum += float(probability.sum())
                chunks_read = index + 1
            metadata = {
                "job": dict(job),
                "rows": rows,
                "rejected_rows": rejected,
                "chunks": chunks_read,
                "positives": positives,
                "mean_probability": probability_sum / rows if rows else None,
                "threshold": scorer.threshold,
                "scorer": scorer.path,
                "seconds": round(time.perf_counter() - started, 3),
                "scoring_seconds": round(scoring_s, 3),
                "checking_seconds": round(checking_s, 3),
                "explain_top": explain_top,
                "explaining_seconds": round(explaining_s, 3),
                "columns": output_columns(settings.spec, explained=bool(explain_top)),
                "created_at": datetime.now(UTC).isoformat(),
            }
            folder.write_json(metadata, METADATA_FILE)
    except FileExistsError:  # another attempt published it first: theirs is the output
        log.info("batch output %s was published concurrently", job["output_url"])
        return {**storage.read_json(job["output"], METADATA_FILE), "created": False}
    log.info(
        "scored %d records (%d rejected) in %d chunks with %s v%s (%s path) in %.1f s -> %s",
        rows,
        rejected,
        chunks_read,
        job["model_name"],
        job["model_version"],
        scorer.path,
        metadata["seconds"],
        job["output_url"],
    )
    return {**metadata, "created": True}


def _published_files(settings: Settings, output: str, prefix: str) -> tuple[Storage, list[str]]:
    """The folder of a published output and its files named ``prefix*``, as its manifest lists them."""
    from airloop.storage import MANIFEST

    storage = output_storage(settings)
    manifest = storage.manifest(output)
    if manifest is None:
        raise FileNotFoundError(f"no batch output published at {storage.url(output)} (no complete {MANIFEST})")
    return storage.child(output), sorted(n for n in manifest["files"] if n.startswith(prefix))


def read_output(settings: Settings, output: str) -> pd.DataFrame:
    """Every prediction of a published output, in input order (for tests and people; one frame: not for 1M rows)."""
    folder, parts = _published_files(settings, output, "part-")
    frames = [folder.read_parquet(n) for n in parts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=output_columns(settings.spec))


def read_rejected(settings: Settings, output: str) -> pd.DataFrame:
    """Every record of a published output that could not be scored, with its ``reason``."""
    folder, parts = _published_files(settings, output, "rejected-")
    frames = [folder.read_parquet(n) for n in parts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[REASON])


# --- lineage ----------------------------------------------------------------------------------------------------


def _input_dataset(job: Mapping[str, Any], dataset_name: str) -> Any:
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.exceptions import MlflowException

    uri = job["input_uri"]
    try:
        source = resolve_dataset_source(uri)
    except MlflowException:  # postgresql://, synthetic://: no MLflow source type; the URI is kept as a tag
        source = CodeDatasetSource(tags={"uri": uri})
    if job["input_version"]:
        return MetaDataset(source, name=f"{dataset_name}@{job['input_version']}", digest=job["input_version"])
    return MetaDataset(source, name=f"{job['source']}:{uri}"[:500], digest=job["airflow_run_id"][:36])


def logged_model_id(version: Any) -> str | None:
    """The MLflow 3 logged model behind a registered version: its ``model_id``, else the id in a ``models:/m-...``
    source (a SQLite registry leaves ``model_id`` empty)."""
    if getattr(version, "model_id", None):
        return version.model_id
    source = str(version.source or "")
    if source.startswith("models:/m-") and source.count("/") == 1:
        return source.removeprefix("models:/")
    return None


def find_lineage(settings: Settings, output: str) -> str | None:
    """The lineage run already logged for ``output`` (a retried task logs nothing twice), or None."""
    from airloop.registry.client import connect, find_finished_run

    return find_finished_run(connect(settings), experiment_name(settings), TAG_OUTPUT, output)


def lineage_link(settings: Settings, output: str) -> str | None:
    """The MLflow UI page of the lineage run of ``output``, or None when none was logged."""
    from airloop.registry.client import connect, ui_link

    run_id = find_lineage(settings, output)
    if run_id is None:
        return None
    return ui_link(settings.mlflow.ui_url, connect(settings).get_run(run_id).info.experiment_id, run_id)


def record_lineage(settings: Settings, job: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """Log the output as a run of ``<experiment>-batch-scoring``: the input dataset and the model version as the
    run's inputs, the output's URL and figures; returns the run id and a link to it in the MLflow UI.

    Idempotent: the run already logged for this output is returned as it is.
    """
    from mlflow.entities import DatasetInput, InputTag, Metric, Param
    from mlflow.entities.logged_model_input import LoggedModelInput

    from airloop.registry.client import connect, ensure_experiment, finished_or_discarded, ui_link

    client = connect(settings)
    experiment_id = ensure_experiment(client, experiment_name(settings), settings.artifact_location)
    run_id = find_lineage(settings, job["output"])
    if run_id is not None:
        log.info("lineage of %s already logged as run %s", job["output"], run_id)
        return {"run_id": run_id, "url": ui_link(settings.mlflow.ui_url, experiment_id, run_id), "created": False}
    version = client.get_model_version(job["model_name"], job["model_version"])
    tags = {
        TAG_OUTPUT: job["output"],
        TAG_OUTPUT_URL: job["output_url"],
        TAG_INPUT: job["input_uri"],
        TAG_MODEL_NAME: job["model_name"],
        TAG_MODEL_VERSION: str(job["model_version"]),
        TAG_AIRFLOW_RUN: job["airflow_run_id"],
    }
    run_id = client.create_run(experiment_id, tags=tags, run_name=job["output"][:250]).info.run_id
    with finished_or_discarded(client, run_id):
        params = {
            "source": job["source"],
            "input_uri": job["input_uri"],
            "input_version": job["input_version"] or "",
            "model_uri": f"models:/{job['model_name']}/{job['model_version']}",
            "model_alias": job["model_alias"] or "",
            "output_url": job["output_url"],
            "chunk_rows": job["chunk_rows"],
            "explain_top": job.get("explain_top", 0),
            "scorer": result["scorer"],
            "threshold": result["threshold"],
        }
        now = int(time.time() * 1000)
        figures = {
            "rows_scored": result["rows"],
            "rows_rejected": result["rejected_rows"],
            "positives": result["positives"],
            "seconds": result["seconds"],
            "rows_per_second": result["rows"] / result["seconds"] if result["seconds"] else 0.0,
        }
        if result.get("mean_probability") is not None:
            figures["mean_probability"] = result["mean_probability"]
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in figures.items()],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        )
        dataset = _input_dataset(job, settings.data.dataset_name)
        model_id = logged_model_id(version)
        models = [LoggedModelInput(model_id)] if model_id else None
        inputs = [DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", "batch_scoring")])]
        client.log_inputs(run_id, datasets=inputs, models=models)
        client.log_dict(run_id, {k: v for k, v in result.items() if k != "created"}, f"{ARTIFACT_DIR}/{METADATA_FILE}")
    log.info("lineage of %s logged as run %s", job["output"], run_id)
    return {"run_id": run_id, "url": ui_link(settings.mlflow.ui_url, experiment_id, run_id), "created": True}
