"""The drift report of one window: versioned JSON, a self-contained HTML page, its publication and its MLflow run.

``render_json`` turns a ``DriftResult`` and where it came from (``ReportContext``) into strict JSON; ``render_html``
makes the page a person reads from that JSON alone (inline CSS and SVG, no scripts, no network). ``publish_report``
writes both files into one folder below the runtime root's reports all at once, and ``log_to_mlflow`` records the
report as one run of the ``<experiment>-monitoring`` experiment whose metrics are stepped by the window end, so drift
over time shows as curves in the MLflow UI. Bad input raises ``ReportInvalid`` before anything is written.

Schema versions: 1 is the first; 2 adds ``performance_estimate`` (the label-free ROC AUC and calibration estimate)
and the ``max_estimated_auc_drop`` threshold. Every version up to ``REPORT_SCHEMA_VERSION`` renders and publishes;
what an older report lacks is left out of the page.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airloop.errors import FinalError
from airloop.monitoring.drift import DriftResult
from airloop.registry.contract import TAG_PREFIX
from airloop.settings import Settings
from airloop.storage import RuntimeLayout, Storage, folder_name

REPORT_SCHEMA_VERSION = 2
JSON_FILE = "report.json"
HTML_FILE = "report.html"
ARTIFACT_DIR = "drift_report"
MONITORING_SUFFIX = "-monitoring"
_SOURCE = re.compile(r"^(prediction_log|dataset:.+)$")
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
_REQUIRED = ("report_id", "created_at", "model", "window", "source", "verdict", "reason", "rows", "features")

# Tags on monitoring runs (not on model versions, so not part of the registry contract).
TAG_MODEL_NAME = f"{TAG_PREFIX}model_name"
TAG_MODEL_VERSION = f"{TAG_PREFIX}model_version"
TAG_VARIANT = f"{TAG_PREFIX}variant"
TAG_VERDICT = f"{TAG_PREFIX}verdict"
TAG_WINDOW_START = f"{TAG_PREFIX}window_start"
TAG_WINDOW_END = f"{TAG_PREFIX}window_end"
TAG_SOURCE = f"{TAG_PREFIX}report_source"
TAG_REPORT_ID = f"{TAG_PREFIX}report_id"
TAG_REPORT_URL = f"{TAG_PREFIX}report_url"


class ReportInvalid(FinalError):
    """A report cannot be built or published from its input; nothing was written."""


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ReportInvalid(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class ReportContext:
    """What a drift result is about: which model version, which window of time, and where the rows came from."""

    model_name: str
    model_version: str
    window_start: datetime
    window_end: datetime
    source: str  # "prediction_log" or "dataset:<version>"
    variant: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if not str(self.model_name).strip() or not str(self.model_version).strip():
            raise ReportInvalid(f"model name and version must be set, got {self.model_name!r} v{self.model_version!r}")
        start = _utc(self.window_start, "window_start")
        end = _utc(self.window_end, "window_end")
        _utc(self.created_at, "created_at")
        if start >= end:
            raise ReportInvalid(f"the window must end after it starts, got {start.isoformat()} .. {end.isoformat()}")
        if not isinstance(self.source, str) or not _SOURCE.match(self.source):
            raise ReportInvalid(f"source must be 'prediction_log' or 'dataset:<version>', got {self.source!r}")


@dataclass(frozen=True)
class ReportLocation:
    """Where a published report lives."""

    folder: str
    json_url: str
    html_url: str


def render_json(result: DriftResult, context: ReportContext) -> dict[str, Any]:
    """The report as strict JSON data: its schema version, the model, the window, every statistic and the verdict."""
    if not isinstance(result, DriftResult):
        raise ReportInvalid(
            f"expected a DriftResult from airloop.monitoring.drift.compare, got {type(result).__name__}"
        )
    if not isinstance(context, ReportContext):
        raise ReportInvalid(f"expected a ReportContext, got {type(context).__name__}")
    drift = result.to_dict()
    drift["drift_schema_version"] = drift.pop("schema_version")
    report: dict[str, Any] = {
        "report_schema_version": REPORT_SCHEMA_VERSION,
        "created_at": _utc(context.created_at, "created_at").isoformat(),
        "model": {"name": context.model_name, "version": str(context.model_version), "variant": context.variant},
        "window": {
            "start": _utc(context.window_start, "window_start").isoformat(),
            "end": _utc(context.window_end, "window_end").isoformat(),
        },
        "source": context.source,
        **drift,
    }
    canonical = _dumps(report)
    report["report_id"] = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    return report


def _dumps(report: Mapping[str, Any]) -> str:
    try:
        return json.dumps(report, sort_keys=True, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ReportInvalid(f"the report is not strict JSON: {err}") from err


def _check(report: Any) -> dict[str, Any]:
    """The report JSON if it is one this module can render and publish; ``ReportInvalid`` saying what is wrong."""
    if not isinstance(report, Mapping):
        raise ReportInvalid(f"a report is a dict from render_json, got {type(report).__name__}")
    version = report.get("report_schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= REPORT_SCHEMA_VERSION:
        raise ReportInvalid(
            f"report_schema_version {version!r} is not one this code reads: 1 to {REPORT_SCHEMA_VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in report]
    if missing:
        raise ReportInvalid(f"the report lacks {missing}")
    model, window = report["model"], report["window"]
    if not isinstance(model, Mapping) or not model.get("name") or not model.get("version"):
        raise ReportInvalid(f"the report's model needs a name and a version, got {model!r}")
    if not isinstance(window, Mapping) or not window.get("start") or not window.get("end"):
        raise ReportInvalid(f"the report's window needs a start and an end, got {window!r}")
    _window_end(report)
    if not isinstance(report["features"], Mapping) or not report["features"]:
        raise ReportInvalid("the report has no features")
    return dict(report)


def _window_end(report: Mapping[str, Any]) -> datetime:
    text = report["window"]["end"]
    try:
        return _utc(datetime.fromisoformat(text), "window end")
    except (TypeError, ValueError) as err:
        raise ReportInvalid(f"the report's window end {text!r} is not an ISO timestamp: {err}") from err


def ordered_features(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report's features, drifted ones first, then by PSI (largest first), then by name."""
    return sorted(report["features"].values(), key=lambda f: (not f["drifted"], -(f["psi"] or 0.0), f["feature"]))


# --- HTML ----------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem;margin:1.5rem 0 .3rem}
.summary{border:2px solid #999;border-radius:6px;padding:1rem 1.2rem;background:#fafafa}
.summary.drift{border-color:#c0392b;background:#fdf0ee}.summary.no_drift{border-color:#27ae60;background:#eef9f1}
.summary.insufficient_data{border-color:#e0a800;background:#fff8e1}
.summary.alert{border-color:#e67e22;background:#fef5e7}
ul.rules{margin:.3rem 0 0 1.2rem;padding:0}ul.rules li{margin:.2rem 0}.rule{font-family:monospace;font-weight:700}
.retrain{color:#c0392b;font-weight:700}.alerting{color:#d35400;font-weight:700}
.verdict{font-size:1.3rem;font-weight:700;text-transform:uppercase}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.6rem 0 0}dt{font-weight:600}dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;
text-align:right}th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
tr.drifted td{background:#fdecea}.yes{color:#c0392b;font-weight:700}
.plot{margin:.2rem 0 1rem}.note{color:#666;font-size:.85rem}
"""
_REF_COLOUR, _CUR_COLOUR, _CUR_DRIFTED = "#9aa5b1", "#2e86de", "#c0392b"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else _e(value)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def bar_svg(bins: list[str], reference: list[float], current: list[float], drifted: bool) -> str:
    """An inline SVG of reference vs current shares per bin (horizontal bars, one pair per bin)."""
    label_w, bar_w, row_h, top = 190, 360, 18, 22
    height = top + row_h * len(bins) + 6
    scale = bar_w / max([*reference, *current, 1e-9])
    colour = _CUR_DRIFTED if drifted else _CUR_COLOUR
    parts = [
        f'<svg width="{label_w + bar_w + 110}" height="{height}" role="img" font-family="sans-serif" font-size="11">',
        f'<rect x="{label_w}" y="4" width="10" height="10" fill="{_REF_COLOUR}"/>'
        f'<text x="{label_w + 14}" y="13">reference</text>'
        f'<rect x="{label_w + 90}" y="4" width="10" height="10" fill="{colour}"/>'
        f'<text x="{label_w + 104}" y="13">current</text>',
    ]
    for i, (label, ref, cur) in enumerate(zip(bins, reference, current, strict=True)):
        y = top + i * row_h
        short = label if len(label) <= 30 else label[:29] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end"><title>{_e(label)}</title>{_e(short)}</text>'
            f'<rect x="{label_w}" y="{y + 1}" width="{ref * scale:.1f}" height="7" fill="{_REF_COLOUR}">'
            f"<title>reference {_pct(ref)}</title></rect>"
            f'<rect x="{label_w}" y="{y + 8}" width="{cur * scale:.1f}" height="7" fill="{colour}">'
            f"<title>current {_pct(cur)}</title></rect>"
            f'<text x="{label_w + max(ref, cur) * scale + 4:.1f}" y="{y + 12}" fill="#555">'
            f"{_pct(ref)} → {_pct(cur)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _summary(report: Mapping[str, Any]) -> str:
    model, window = report["model"], report["window"]
    verdict = str(report["verdict"])
    rows = [
        ("Reason", _e(report["reason"])),
        (
            "Model",
            f"{_e(model['name'])} v{_e(model['version'])}"
            + (f" ({_e(model['variant'])})" if model.get("variant") else ""),
        ),
        ("Window", f"{_e(window['start'])} → {_e(window['end'])}"),
        ("Source", _e(report["source"])),
        ("Rows", _e(report["rows"])),
        (
            "Drifted features",
            f"{len(report.get('drifted_features') or [])} of {len(report['features'])} "
            f"(weighted share {_num(report.get('drifted_share'), 3)})",
        ),
    ]
    if "multivariate" in report:
        found = report.get("multivariate")
        rows.append(
            (
                "Multivariate drift",
                "not checked (no reference sample with this version, or too few rows)"
                if not found
                else f"a classifier tells the window from the reference with ROC AUC {_dec(found['roc_auc'])} "
                f"{_interval(found['interval'])} on {_e(found['rows_window'])} + {_e(found['rows_reference'])} rows"
                + (f"; relies on {_e(', '.join(found['features']))}" if found.get("features") else ""),
            )
        )
    if "importance_weighted_share" in report:
        weighted = report.get("importance_weighted_share")
        rows.append(
            (
                "Importance in drifted features",
                "unknown (the version's profile has no importances: retrain to weigh drift)"
                if weighted is None
                else f"{_pct(weighted)} of the model's permutation importance",
            )
        )
    prediction = report.get("prediction")
    if prediction:
        flag = " <span class='yes'>drifted</span>" if prediction["drifted"] else ""
        rows.append(
            ("Prediction drift", f"PSI {_num(prediction['psi'])} (threshold {_num(prediction['psi_threshold'])}){flag}")
        )
    else:
        rows.append(("Prediction drift", "not checked"))
    performance = report.get("performance")
    if performance:
        rows.append(("Labelled rows", _e(performance["labelled_rows"])))
        rows.append(
            (
                "ROC AUC",
                f"realised {_num(performance['roc_auc'])} vs test {_num(performance['reference_roc_auc'])}",
            )
        )
        rows.append(
            (
                "Log loss",
                f"realised {_num(performance['log_loss'])} vs test {_num(performance['reference_log_loss'])}",
            )
        )
    estimated = report.get("performance_estimate")
    if estimated:
        flag = " <span class='yes'>dropped</span>" if estimated.get("dropped") else ""
        rows.append(
            (
                "Estimated ROC AUC",
                f"{_num(estimated['estimated_roc_auc'])} {_interval(estimated.get('interval'))} without labels vs "
                f"reference estimate {_num(estimated['reference_estimated_roc_auc'])}: "
                f"drop {_dec(estimated['drop'])} (max {_num(estimated['max_drop'])}){flag}",
            )
        )
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        f'<section class="summary {_e(verdict)}"><div class="verdict">Verdict: {_e(verdict.replace("_", " "))}'
        f"</div>{_rules(report)}<dl>{items}</dl></section>"
    )


def _rules(report: Mapping[str, Any]) -> str:
    """The decision: retrain and alert rules that fired, each with its numbers (reports of schema 3 on)."""
    if "rules" not in report:
        return ""
    hits = report.get("rules") or []
    if not hits:
        return '<p class="note">No alert or retrain rule fired.</p>'
    items = "".join(
        f'<li><span class="{"retrain" if h["decision"] == "retrain" else "alerting"}">{_e(h["decision"])}</span> '
        f'<span class="rule">{_e(h["rule"])}</span>: {_e(h["message"])}</li>'
        for h in hits
    )
    return f'<ul class="rules">{items}</ul>'


def _dec(value: Any, places: int = 3) -> str:
    return "–" if value is None else f"{value:.{places}f}"


def _interval(bounds: Any) -> str:
    return f"[{_dec(bounds[0])}, {_dec(bounds[1])}]" if bounds else ""


def _estimate_section(report: Mapping[str, Any]) -> list[str]:
    """Estimated (from the probabilities alone) beside realised (from the outcomes that arrived), figure by figure."""
    estimated = report.get("performance_estimate")
    if not estimated:
        return []  # a report of schema 1, or a window compared without probabilities
    realised = report.get("performance") or {}
    labelled = estimated.get("labelled") or {}
    n_labelled = labelled.get("rows", 0)
    rows = [
        (
            f"ROC AUC, all {_e(estimated['rows'])} rows",
            f"{_num(estimated['estimated_roc_auc'])} {_interval(estimated.get('interval'))}",
            "–",
        ),
        (
            f"ROC AUC, the {_e(n_labelled)} labelled rows",
            f"{_num(labelled.get('estimated_roc_auc'))} {_interval(labelled.get('interval'))}",
            _num(realised.get("roc_auc")),
        ),
        ("Log loss, labelled rows", _num(labelled.get("expected_log_loss")), _num(realised.get("log_loss"))),
        (
            "Positive rate, labelled rows",
            f"{_pct(labelled.get('mean_probability'))} (mean probability)",
            _pct(labelled.get("observed_rate")),
        ),
        ("Positive rate, all rows", f"{_pct(estimated.get('expected_positive_rate'))} (mean probability)", "–"),
        ("Brier score, all rows", _num(estimated.get("expected_brier")), "–"),
        ("Log loss, all rows", _num(estimated.get("expected_log_loss")), "–"),
        (
            "ROC AUC, reference (test set)",
            _num(estimated.get("reference_estimated_roc_auc")),
            _num(estimated.get("reference_realised_roc_auc")),
        ),
    ]
    body = "".join(f"<tr><td>{name}</td><td>{est}</td><td>{real}</td></tr>" for name, est, real in rows)
    return [
        "<h2>Performance: estimated without labels vs realised</h2>",
        '<p class="note">Estimated: what the model\'s own probabilities imply if they are calibrated (confidence-based '
        "performance estimation); the interval is where the realised ROC AUC should fall (95%). Realised: from the "
        "outcomes that have arrived. The estimate follows covariate drift but cannot see concept drift: when outcomes "
        "stop following the features as they did, only the realised figures fall.</p>",
        '<table class="estimate"><thead><tr><th>Figure</th><th>Estimated</th><th>Realised</th></tr></thead>'
        f"<tbody>{body}</tbody></table>",
    ]


def _table(features: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>Feature</th><th>Kind</th><th>Drifted</th><th>PSI</th><th>Threshold</th><th>JS distance</th>"
        "<th>Test</th><th>Statistic</th><th>p (adjusted)</th><th>Null rate ref → cur</th></tr>"
    )
    body = "".join(
        f'<tr class="{"drifted" if f["drifted"] else ""}"><td><a href="#feature-{i}">{_e(f["feature"])}</a></td>'
        f"<td>{_e(f['kind'])}</td><td>{'<span class=yes>yes</span>' if f['drifted'] else 'no'}</td>"
        f"<td>{_num(f['psi'])}</td><td>{_num(f['psi_threshold'])}</td><td>{_num(f['js_distance'])}</td>"
        f"<td>{_e(f['test'])}</td><td>{_num(f['statistic'])}</td><td>{_num(f['p_value_adjusted'])}</td>"
        f"<td>{_pct(f['null_rate_reference'])} → {_pct(f['null_rate_current'])}</td></tr>"
        for i, f in enumerate(features)
    )
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _plot_section(anchor: str, f: Mapping[str, Any]) -> str:
    status = "<span class='yes'>drifted</span>" if f["drifted"] else "not drifted"
    plot = bar_svg(list(f["bins"]), list(f["reference_shares"]), list(f["current_shares"]), bool(f["drifted"]))
    return (
        f'<h3 id="{_e(anchor)}">{_e(f["feature"])} — {status}, PSI {_num(f["psi"])}</h3><div class="plot">{plot}</div>'
    )


def _segment_section(report: Mapping[str, Any]) -> list[str]:
    """Per segment (the spec's ``monitoring.segments``): rows and share against training, the estimated ROC AUC, and
    on the labelled rows the realised ROC AUC against the test set's and the observed vs predicted rate."""
    segments = report.get("segments") or {}
    if not segments:
        return []
    head = (
        "<tr><th>Feature</th><th>Segment</th><th>Rows</th><th>Share (training)</th><th>Estimated ROC AUC</th>"
        "<th>Labelled</th><th>Realised ROC AUC (test)</th><th>Observed vs predicted rate</th></tr>"
    )
    body = []
    for name, per in segments.items():
        for segment, entry in sorted(per.items(), key=lambda kv: -kv[1]["rows"]):
            labelled, test = entry.get("labelled") or {}, entry.get("test") or {}
            body.append(
                f"<tr><td>{_e(name)}</td><td>{_e(segment)}</td><td>{_e(entry['rows'])}</td>"
                f"<td>{_pct(entry['share'])} ({_pct(entry['training_share'])})</td>"
                f"<td>{_dec(entry.get('estimated_roc_auc'))}</td><td>{_e(labelled.get('rows', 0))}</td>"
                f"<td>{_dec(labelled.get('roc_auc'))} ({_dec(test.get('roc_auc'))})</td>"
                f"<td>{_pct(labelled.get('observed_rate'))} vs {_pct(labelled.get('mean_probability'))}</td></tr>"
            )
    return [
        "<h2>Segments</h2>",
        '<p class="note">Each segment is a bin of a feature the model spec names; a drop confined to one group shows '
        "here and, beyond doubt, as a segment rule above.</p>",
        f"<table>{head}{''.join(body)}</table>",
    ]


def render_html(report_json: Mapping[str, Any]) -> str:
    """One self-contained HTML page: the summary, the features table (drifted first), estimated vs realised
    performance (when the report has the estimate) and a plot per feature."""
    report = _check(report_json)
    features = ordered_features(report)
    model = report["model"]
    title = f"Drift report: {model['name']} v{model['version']}, window ending {report['window']['end']}"
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _summary(report),
        "<h2>Features</h2>",
        '<p class="note">Drifted features first, then by PSI. A feature drifts when its PSI reaches its threshold; '
        "p-values are Benjamini-Hochberg adjusted across features and never decide alone.</p>",
        _table(features),
        *_estimate_section(report),
        *_segment_section(report),
        "<h2>Distributions: reference vs current</h2>",
        *(_plot_section(f"feature-{i}", f) for i, f in enumerate(features)),
    ]
    if report.get("prediction"):
        sections += ["<h2>Predicted probability</h2>", _plot_section("prediction", report["prediction"])]
    sections.append(
        f'<p class="note">Report {_e(report["report_id"])}, schema v{_e(report["report_schema_version"])}, '
        f"created {_e(report['created_at'])}.</p></body></html>"
    )
    return "\n".join(sections)


# --- publication -----------------------------------------------------------------------------------------------------


def report_parts(report_json: Mapping[str, Any]) -> tuple[str, str, str]:
    """The folder of a report below the reports root: ``<model>/v<version>/<window end>-<report id>``."""
    report = _check(report_json)
    end = _window_end(report)
    model = report["model"]
    try:
        return (
            folder_name(str(model["name"])),
            folder_name(f"v{model['version']}"),
            folder_name(f"{end:%Y%m%dT%H%M%SZ}-{report['report_id']}"),
        )
    except ValueError as err:
        raise ReportInvalid(f"the report cannot name its folder: {err}") from err


def publish_report(storage: Storage, report_json: Mapping[str, Any], html_page: str) -> ReportLocation:
    """Write ``report.json`` and ``report.html`` below the runtime root's reports folder all at once.

    Args:
        storage: the runtime root (``settings.layout.root``); the reports folder below it comes from ``RuntimeLayout``.
        report_json: the report from ``render_json``.
        html_page: the page from ``render_html`` of the same report.

    Raises:
        ReportInvalid: the report or page is malformed (nothing written).
        FileExistsError: this very report (same id) was already published.
    """
    report = _check(report_json)
    if not isinstance(html_page, str) or not html_page.strip():
        raise ReportInvalid("the HTML page is empty")
    files = {JSON_FILE: _dumps(report).encode(), HTML_FILE: html_page.encode()}
    reports = RuntimeLayout(storage).reports()
    parts = report_parts(report)
    folder = reports.publish_dir(files, *parts)
    return ReportLocation(
        folder=folder, json_url=reports.url(*parts, JSON_FILE), html_url=reports.url(*parts, HTML_FILE)
    )


# --- MLflow ----------------------------------------------------------------------------------------------------------


def metric_name(name: str) -> str:
    """``name`` with characters MLflow does not allow in metric keys replaced by '_'."""
    return _METRIC_UNSAFE.sub("_", name)


def report_metrics(report_json: Mapping[str, Any]) -> dict[str, float]:
    """The report's numbers as MLflow metrics: per-feature PSI and JS, drifted share, prediction PSI, rows, realised
    and estimated performance."""
    report = _check(report_json)
    found: dict[str, float] = {}
    for f in report["features"].values():
        for prefix, key in (("drift_psi_", "psi"), ("drift_js_", "js_distance")):
            name = metric_name(prefix + str(f["feature"]))
            if name in found:
                raise ReportInvalid(f"features collide as MLflow metric {name!r} once sanitised")
            if f.get(key) is not None:
                found[name] = float(f[key])
    found["drifted_share"] = float(report.get("drifted_share") or 0.0)
    if report.get("importance_weighted_share") is not None:
        found["importance_weighted_share"] = float(report["importance_weighted_share"])
    if report.get("multivariate"):
        found["multivariate_roc_auc"] = float(report["multivariate"]["roc_auc"])
    found["rows"] = float(report["rows"])
    if report.get("prediction"):
        found["prediction_psi"] = float(report["prediction"]["psi"])
    performance = report.get("performance") or {}
    for key in ("roc_auc", "log_loss"):
        if performance.get(key) is not None:
            found[f"realised_{key}"] = float(performance[key])
    if performance:
        found["labelled_rows"] = float(performance["labelled_rows"])
    estimated = report.get("performance_estimate") or {}
    for metric, key in (
        ("estimated_roc_auc", "estimated_roc_auc"),
        ("estimated_auc_drop", "drop"),
        ("expected_positive_rate", "expected_positive_rate"),
        ("expected_brier", "expected_brier"),
        ("expected_log_loss", "expected_log_loss"),
    ):
        if estimated.get(key) is not None:
            found[metric] = float(estimated[key])
    return {k: v for k, v in found.items() if math.isfinite(v)}


def monitoring_experiment(settings: Settings) -> str:
    """The name of the experiment drift reports are logged to."""
    return f"{settings.mlflow.experiment}{MONITORING_SUFFIX}"


def log_to_mlflow(settings: Settings, report_json: Mapping[str, Any], location: ReportLocation) -> str:
    """Log a published report as one run of the monitoring experiment; returns the run id.

    Metrics carry the window end as both timestamp and step (epoch seconds), so successive windows draw curves. On
    any failure the half-logged run is marked failed and deleted, and the error is raised.
    """
    from mlflow.entities import Metric

    from airloop.registry.client import connect, ensure_experiment, finished_or_discarded

    report = _check(report_json)
    metrics = report_metrics(report)
    end = _window_end(report)
    client = connect(settings)
    name = monitoring_experiment(settings)
    experiment_id = ensure_experiment(client, name, settings.artifact_location)  # a concurrent creator wins quietly
    model = report["model"]
    tags = {
        TAG_MODEL_NAME: str(model["name"]),
        TAG_MODEL_VERSION: str(model["version"]),
        TAG_VERDICT: str(report["verdict"]),
        TAG_WINDOW_START: str(report["window"]["start"]),
        TAG_WINDOW_END: str(report["window"]["end"]),
        TAG_SOURCE: str(report["source"]),
        TAG_REPORT_ID: str(report["report_id"]),
        TAG_REPORT_URL: location.html_url,
    }
    if model.get("variant"):
        tags[TAG_VARIANT] = str(model["variant"])
    run_name = f"{model['name']}-v{model['version']}-{end:%Y%m%dT%H%M%SZ}"
    run_id = client.create_run(experiment_id, tags=tags, run_name=run_name).info.run_id
    with finished_or_discarded(client, run_id):
        timestamp, step = int(end.timestamp() * 1000), int(end.timestamp())
        client.log_batch(run_id, metrics=[Metric(k, v, timestamp, step) for k, v in sorted(metrics.items())])
        client.log_text(run_id, _dumps(report), f"{ARTIFACT_DIR}/{JSON_FILE}")
        client.log_text(run_id, render_html(report), f"{ARTIFACT_DIR}/{HTML_FILE}")
    return run_id


def find_logged(settings: Settings, report_id: str) -> str | None:
    """The monitoring run that already logged report ``report_id`` (a retried task logs nothing twice), or None."""
    from airloop.registry.client import connect, find_finished_run

    return find_finished_run(connect(settings), monitoring_experiment(settings), TAG_REPORT_ID, report_id)
