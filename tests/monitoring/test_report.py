"""The drift report: versioned JSON, a self-contained HTML page, atomic publication and one MLflow run per report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from airloop.monitoring.baseline import reference_profile
from airloop.monitoring.drift import compare
from airloop.monitoring.report import (
    HTML_FILE,
    JSON_FILE,
    REPORT_SCHEMA_VERSION,
    ReportContext,
    ReportInvalid,
    log_to_mlflow,
    monitoring_experiment,
    publish_report,
    render_html,
    render_json,
    report_metrics,
)
from airloop.settings import Settings
from airloop.storage import RuntimeLayout, Storage
from airloop.usecases.readmission import synthetic
from airloop.usecases.readmission import transform as tf

START = datetime(2026, 11, 1, tzinfo=UTC)


RELIED_ON = ("age", "number_inpatient", "insulin", "service_utilization")


def _features(n: int, seed: int, covariate_drift: float = 0.0) -> pd.DataFrame:
    raw = synthetic.generate(n, seed=seed, covariate_drift=covariate_drift)
    return tf.features_from_frame(tf.prepare(raw), tf.default_spec())


def _context(day: int = 0, **overrides) -> ReportContext:
    values = {
        "model_name": "readmission",
        "model_version": "3",
        "window_start": START + timedelta(days=day),
        "window_end": START + timedelta(days=day + 1),
        "source": "prediction_log",
        "variant": "champion",
        "created_at": datetime(2026, 11, 20, 12, tzinfo=UTC),
    }
    return ReportContext(**{**values, **overrides})


@pytest.fixture(scope="module")
def profile() -> dict:
    """A reference profile (with predictions and test metrics) of 4,000 synthetic training rows."""
    reference = _features(4_000, seed=1)
    proba = np.random.default_rng(5).beta(2, 6, size=2_000)
    built = reference_profile(
        reference,
        list(tf.NUMERIC_FEATURES),
        list(tf.CATEGORICAL_FEATURES),
        proba,
        test_metrics={"roc_auc": 0.68, "log_loss": 0.33},
        # The model leans on what the generator's covariate drift moves: that drift is worth a retrain.
        importance={n: 0.05 if n in RELIED_ON else 0.001 for n in (*tf.NUMERIC_FEATURES, *tf.CATEGORICAL_FEATURES)},
    )
    return json.loads(json.dumps(built))


def _result(profile: dict, seed: int, drift: float):
    window = _features(1_500, seed=seed, covariate_drift=drift)
    rng = np.random.default_rng(seed)
    proba = rng.beta(2, 6 - 3 * drift / 1.5, size=len(window))
    outcomes = np.where(rng.random(len(window)) < 0.5, (rng.random(len(window)) < proba).astype(float), np.nan)
    return compare(profile, window, probabilities=proba, outcomes=outcomes)


@pytest.fixture(scope="module")
def drifted(profile):
    """The comparison of a window with strong covariate drift."""
    return _result(profile, seed=7, drift=1.5)


@pytest.fixture(scope="module")
def report(drifted) -> dict:
    """The JSON report of the drifted window."""
    return render_json(drifted, _context())


def test_json_report_holds_version_model_window_and_every_feature(report, drifted, profile):
    text = json.dumps(report, allow_nan=False)

    assert json.loads(text) == report
    assert report["report_schema_version"] == REPORT_SCHEMA_VERSION
    assert report["model"] == {"name": "readmission", "version": "3", "variant": "champion"}
    assert report["window"] == {"start": "2026-11-01T00:00:00+00:00", "end": "2026-11-02T00:00:00+00:00"}
    assert report["source"] == "prediction_log"
    assert set(report["features"]) == set(profile["features"])
    assert report["verdict"] == drifted.verdict == "drift"
    assert report["rows"] == drifted.rows
    assert report["performance"]["labelled_rows"] > 0
    assert report["prediction"]["psi"] == pytest.approx(drifted.prediction.psi)
    assert re.fullmatch(r"[0-9a-f]{10}", report["report_id"])


def test_context_rejects_naive_or_backwards_windows_and_unknown_sources():
    with pytest.raises(ReportInvalid, match="timezone-aware"):
        _context(window_start=datetime(2026, 11, 1))
    with pytest.raises(ReportInvalid, match="end after it starts"):
        _context(window_end=START)
    with pytest.raises(ReportInvalid, match="dataset:<version>"):
        _context(source="somewhere")
    assert _context(source="dataset:20261101T000000Z").source.startswith("dataset:")


def test_html_is_self_contained_and_lists_drifted_features_first(report):
    page = render_html(report)
    features = report["features"].values()
    drifted = next(f["feature"] for f in features if f["drifted"])
    steady = next(f["feature"] for f in features if not f["drifted"])

    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page)
    assert "<script" not in page and "<link" not in page and "http" not in page
    assert "Verdict: drift" in page
    assert "importance_weighted_drift</span>" in page and "Importance in drifted features" in page
    assert page.count("<svg") == len(report["features"]) + 1  # one plot per feature and the predictions
    table = page[page.index("<table>") : page.index("</table>")]
    assert table.index(f">{drifted}<") < table.index(f">{steady}<")
    assert "missing" in page
    assert "realised" in page


def test_html_shows_the_label_free_estimate_beside_the_realised_figures(report):
    estimated, realised = report["performance_estimate"], report["performance"]

    page = render_html(report)

    section = page[page.index("Performance: estimated without labels vs realised") :]
    section = section[: section.index("</table>")]
    labelled = f"the {estimated['labelled']['rows']} labelled rows"
    row = section[section.index(labelled) : section.index("</tr>", section.index(labelled))]
    assert f"{estimated['labelled']['estimated_roc_auc']:.4g}" in row and f"{realised['roc_auc']:.4g}" in row
    assert f"{estimated['reference_estimated_roc_auc']:.4g}" in section and "0.68" in section
    assert "cannot see concept drift" in section
    assert f"Estimated ROC AUC</dt><dd>{estimated['estimated_roc_auc']:.4g}" in page
    assert {"estimated_roc_auc", "estimated_auc_drop", "expected_brier"} <= set(report_metrics(report))


def test_a_schema_1_report_without_the_estimate_still_renders_and_publishes(tmp_path, report):
    old = json.loads(json.dumps(report))
    del old["performance_estimate"], old["thresholds"]["max_estimated_auc_drop"]
    old["report_schema_version"] = 1

    page = render_html(old)
    location = publish_report(Storage.from_url(tmp_path / "runtime"), old, page)

    assert "Verdict: drift" in page and "realised" in page
    assert "Performance: estimated" not in page and "Estimated ROC AUC" not in page
    assert "estimated_roc_auc" not in report_metrics(old) and "realised_roc_auc" in report_metrics(old)
    assert location.html_url.endswith(HTML_FILE)


def test_html_escapes_strings_from_the_data(report):
    hostile = json.loads(json.dumps(report))
    hostile["model"]["name"] = "<script>alert(1)</script>"
    first = next(iter(hostile["features"].values()))
    first["bins"][0] = '"><img src=x onerror=alert(1)>'

    page = render_html(hostile)

    assert "<script>alert" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_bad_report_json_is_refused_with_a_clear_message(report):
    with pytest.raises(ReportInvalid, match="report_schema_version"):
        render_html({**report, "report_schema_version": 99})
    with pytest.raises(ReportInvalid, match="report_schema_version"):
        render_html({**report, "report_schema_version": 0})
    with pytest.raises(ReportInvalid, match="lacks"):
        render_html({k: v for k, v in report.items() if k != "window"})
    with pytest.raises(ReportInvalid, match="not an ISO timestamp"):
        render_html({**report, "window": {"start": "x", "end": "yesterday"}})


def test_publish_writes_both_files_in_one_report_folder(tmp_path, report):
    root = Storage.from_url(tmp_path / "runtime")

    location = publish_report(root, report, render_html(report))

    reports = RuntimeLayout(root).reports()
    folder = f"readmission/v3/20261102T000000Z-{report['report_id']}"
    assert location.folder == reports.url(folder)
    assert json.loads(reports.read_text(folder, JSON_FILE)) == report
    assert reports.read_text(folder, HTML_FILE).startswith("<!DOCTYPE html>")
    assert location.html_url == reports.url(folder, HTML_FILE)
    with pytest.raises(FileExistsError):
        publish_report(root, report, render_html(report))


def test_failure_mid_publish_leaves_no_partial_report(tmp_path, report, monkeypatch):
    root = Storage.from_url(tmp_path / "runtime")
    real_write = Storage.write_bytes

    def fail_on_html(self, data, *parts):
        if parts[-1] == HTML_FILE:
            raise OSError("disk full")
        return real_write(self, data, *parts)

    monkeypatch.setattr(Storage, "write_bytes", fail_on_html)
    with pytest.raises(OSError, match="disk full"):
        publish_report(root, report, render_html(report))

    reports = RuntimeLayout(root).reports()
    assert reports.walk_files() == []


def test_bad_input_publishes_nothing(tmp_path, report):
    root = Storage.from_url(tmp_path / "runtime")

    with pytest.raises(ReportInvalid, match="HTML page is empty"):
        publish_report(root, report, "")
    with pytest.raises(ReportInvalid):
        publish_report(root, {**report, "model": {"name": "readmission"}}, "<html></html>")

    assert RuntimeLayout(root).reports().walk_files() == []


def test_reports_of_two_windows_become_two_monitoring_runs_with_curves(tmp_path, profile, drifted):
    settings = Settings(home=tmp_path / "home")
    root = Storage.from_url(tmp_path / "runtime")
    steady = _result(profile, seed=11, drift=0.0)
    run_ids = []
    for day, result in ((0, drifted), (1, steady)):
        report = render_json(result, _context(day))
        location = publish_report(root, report, render_html(report))
        run_ids.append(log_to_mlflow(settings, report, location))

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(monitoring_experiment(settings))
    assert experiment is not None and experiment.name == "readmission-monitoring"
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    first = client.get_run(run_ids[0])
    assert first.info.status == "FINISHED"
    assert first.data.tags["airloop.verdict"] == "drift"
    assert first.data.tags["airloop.model_version"] == "3"
    assert first.data.metrics["drift_psi_age"] == pytest.approx(drifted.features["age"].psi)
    assert first.data.metrics["rows"] == drifted.rows
    assert {"drift_js_age", "drifted_share", "prediction_psi", "estimated_roc_auc"} <= set(first.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run_ids[0], "drift_report")}
    assert artifacts == {f"drift_report/{JSON_FILE}", f"drift_report/{HTML_FILE}"}
    history = client.get_metric_history(run_ids[1], "drift_psi_age")
    assert len(history) == 1
    points = [client.get_metric_history(run_id, "drift_psi_age")[0] for run_id in run_ids]
    ends = [int((START + timedelta(days=d + 1)).timestamp()) for d in (0, 1)]
    assert [p.step for p in points] == ends
    assert [p.timestamp for p in points] == [e * 1000 for e in ends]
    assert points[0].value > points[1].value


def test_failed_mlflow_logging_leaves_no_run_behind(tmp_path, report, monkeypatch):
    settings = Settings(home=tmp_path / "home")
    location = publish_report(Storage.from_url(tmp_path / "runtime"), report, render_html(report))

    def refuse(self, run_id, text, artifact_file):
        raise OSError("artifact store unreachable")

    monkeypatch.setattr(MlflowClient, "log_text", refuse)
    with pytest.raises(OSError, match="unreachable"):
        log_to_mlflow(settings, report, location)

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(monitoring_experiment(settings))
    assert client.search_runs([experiment.experiment_id]) == []
