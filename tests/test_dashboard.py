"""The Grafana dashboard queries only metrics that exist.

``helm-values/grafana-dashboard.json`` (shipped as the ConfigMap ``helm-values/grafana-dashboard.yaml``) is read as
JSON, every PromQL expression in it is tokenised, and each metric name it selects must be

- one the prediction service's ``/metrics`` shows with samples: the real app, on the session's registry, with one
  drift verdict and one A/B evaluation in its model's decision ledger, after a predict request, a malformed one and a
  rate-limited one; or
- one Airflow emits, as the statsd-exporter mapping in ``helm-values/airflow.yaml`` names it: every metric of
  Airflow's own metric registry (``metrics_template.yaml`` of the installed Airflow), under its legacy and its new
  name, pushed through that mapping.

The label names each selector and ``by (...)`` uses must be labels of those metrics, the fixed label values must be
ones the service reports (or, for error kinds, one the service's code raises), and the task ids the loop panels select
must be tasks of the model's DAGs. Regenerate the ConfigMap after editing the JSON:
``.venv/bin/python -m tests.test_dashboard``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "helm-values"
DASHBOARD = VALUES / "grafana-dashboard.json"
CONFIGMAP = VALUES / "grafana-dashboard.yaml"
CONFIGMAP_KEY = "airloop-operators.json"
CONFIGMAP_HEADER = f"""\
# The airloop operators' dashboard for Grafana's dashboard sidecar, which loads every ConfigMap labelled
# grafana_dashboard: "1" in the namespaces it watches (kube-prometheus-stack: grafana.sidecar.dashboards).
# GENERATED from grafana-dashboard.json: edit the JSON, then run `.venv/bin/python -m tests.test_dashboard`;
# tests/test_dashboard.py fails while the two differ. What each panel reads: helm-values/README.md, section 5.
#   kubectl apply -n airloop -f helm-values/grafana-dashboard.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: airloop-grafana-dashboard
  labels:
    grafana_dashboard: "1"
    app.kubernetes.io/part-of: airloop
data:
  {CONFIGMAP_KEY}: |
"""
# The Airflow chart's default [metrics] statsd_prefix (helm-values/airflow.yaml may set config.metrics.statsd_prefix).
CHART_STATSD_PREFIX = "airflow"
# What statsd-exporter makes of an Airflow timer (a summary: seconds), counter and gauge, by sample name suffix.
EXPORTED_SUFFIXES = {"timer": ("", "_sum", "_count"), "counter": ("",), "gauge": ("",)}
SUMMARY_LABELS = {"": {"quantile"}, "_sum": set(), "_count": set()}

# --- PromQL, as far as a dashboard's queries need it ----------------------------------------------------------------

TOKEN = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)"""
    r"|(?P<range>\[[^\]]*\])"
    r"|(?P<duration>(?:\d+(?:ms|[smhdwy]))+)"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<op>=~|!~|!=|==|>=|<=|[{}(),=<>+\-*/^%])"
    r"|(?P<space>\s+)"
)
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}


@dataclass
class Query:
    """What one PromQL expression selects: (metric, {label: (operator, value)}) per selector, grouping labels."""

    expr: str
    selectors: list[tuple[str, dict[str, tuple[str, str]]]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {metric for metric, _ in self.selectors}


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) of each token, whitespace dropped; a character PromQL does not have fails the test."""
    found, at = [], 0
    while at < len(expr):
        match = TOKEN.match(expr, at)
        assert match, f"cannot tokenise {expr[at : at + 30]!r} in {expr!r}"
        if match.lastgroup != "space":
            found.append((match.lastgroup, match.group()))
        at = match.end()
    return found


def unquote(text: str) -> str:
    return text[1:-1] if text[0] == "`" else json.loads(text) if text[0] == '"' else text[1:-1]


def parse(expr: str) -> Query:
    """The metric selectors and grouping labels of ``expr``: an identifier followed by ``(``, ``by`` or ``without`` is
    a function or aggregation, one in ``{...}`` or after ``by``/``on``/... is a label, a PromQL keyword is neither; any
    other identifier is a metric."""
    query, found = Query(expr), tokens(expr)
    i = 0
    while i < len(found):
        kind, text = found[i]
        following = found[i + 1][1] if i + 1 < len(found) else ""
        if kind == "ident" and text in GROUPING and following == "(":
            close = next(j for j in range(i + 2, len(found)) if found[j][1] == ")")
            query.grouping |= {t for k, t in found[i + 2 : close] if k == "ident"}
            i = close + 1
            continue
        aggregation = following in ("by", "without")  # sum by (...) (...)
        if kind == "ident" and following != "(" and not aggregation and text.lower() not in KEYWORDS | GROUPING:
            matchers: dict[str, tuple[str, str]] = {}
            if following == "{":
                close = next(j for j in range(i + 2, len(found)) if found[j][1] == "}")
                inside = [t for t in found[i + 2 : close] if t[1] != ","]
                assert len(inside) % 3 == 0, f"not label matchers: {inside} in {expr!r}"
                for (k1, label), (k2, operator), (k3, value) in zip(*[iter(inside)] * 3, strict=True):
                    assert (k1, k2, k3) == ("ident", "op", "string"), f"bad matcher {label}{operator}{value}: {expr!r}"
                    matchers[label] = (operator, unquote(value))
                i = close
            query.selectors.append((text, matchers))
        elif kind == "op" and text == "{":
            raise AssertionError(f"a selector without a metric name: {expr!r}")
        i += 1
    return query


def panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query")
    return query.get("query", "") if isinstance(query, dict) else query or ""


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: each panel target's, and each query variable's metric selector (``label_values(s, l)``
    queries ``s``)."""
    found = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", variable_query(variable))
            assert selector, f"variable {variable['name']}: only label_values(selector, label) is checked here"
            found.append(f"count by ({selector.group(2)}) ({selector.group(1)})")
    return found


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def configmap_text(dashboard_json: str) -> str:
    """The ConfigMap that ships ``dashboard_json``: the header above, then the JSON as a literal block."""
    body = "".join(f"    {line}\n" if line else "\n" for line in dashboard_json.splitlines())
    return CONFIGMAP_HEADER + body


def plain_words(value: str) -> list[str] | None:
    """The alternatives of a matcher value that is a plain word or ``a|b|c`` of words, else None (a real regex)."""
    return value.split("|") if re.fullmatch(r"\w+(\|\w+)*", value) else None


# --- what the service exports ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """Sample name -> label names, and (sample name, label) -> the values seen."""

    labels: dict[str, set[str]]
    values: dict[tuple[str, str], set[str]]


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Exported:
    """The real app's /metrics after a predict request (admin key), a malformed one, and requests past a rate limit,
    with a drift verdict and an evaluation in the ledger: counters, histograms, log and queue gauges and the ledger
    figures have samples."""
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from airloop.ledger import Kind, ledger
    from serving.main import create_app
    from tests.serving.conftest import API_KEY, NAME, app_settings, session_registry

    registry = session_registry(tmp_path_factory)
    # A bucket of 4 per (key, address) that never refills: the 4 requests with the admin key below all pass, the 5th
    # /health without one is refused at once (no hold).
    settings = app_settings(
        tmp_path_factory.mktemp("dashboard"),
        registry,
        rate_limit_per_s=0.001,
        rate_limit_burst=4,
        rate_limit_hold_s=0,
    )
    book = ledger(settings)
    verdict = {"source": "prediction_log", "verdict": "drift", "drifted_share": 0.4, "rows": 500, "reason": "test"}
    book.record(Kind.DRIFT_VERDICT, "drift:dashboard", "1", verdict, "test")
    arms = {"champion": {"labelled": 120}, "challenger": {"labelled": 14}}
    book.record(Kind.EVALUATION, "evaluation:dashboard", NAME, {"action": "continue", "arms": arms}, "test")
    key = {"X-API-Key": API_KEY}
    with TestClient(create_app(settings)) as client:
        scored = client.post("/v1/predict", json={"records": list(registry.records[:3])}, headers=key)
        assert scored.status_code == 200, scored.text
        malformed = client.post("/v1/predict", content=b"{", headers={**key, "Content-Type": "application/json"})
        assert malformed.status_code == 400, malformed.text
        assert [client.get("/health").status_code for _ in range(5)][-1] == 429
        # A scrape starts the read of the ledger figures in the background; the next one after it shows them.
        assert client.get("/metrics", headers=key).status_code == 200
        client.app.state.airloop.models[NAME].ledger_figures.running.result(timeout=30)
        scraped = client.get("/metrics", headers=key)
        assert scraped.status_code == 200, scraped.text
    labels: dict[str, set[str]] = {}
    values: dict[tuple[str, str], set[str]] = {}
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            for label, value in sample.labels.items():
                values.setdefault((sample.name, label), set()).add(value)
    return Exported(labels, values)


def error_kinds_in_code() -> set[str]:
    """Every string literal of the serving package: an error kind the dashboard names must be one of them."""
    return {m for path in (ROOT / "serving").glob("*.py") for m in re.findall(r'"(\w+)"', path.read_text())}


# --- what Airflow exports, through the statsd-exporter mapping ------------------------------------------------------


def airflow_values() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all((VALUES / "airflow.yaml").read_text()) if d]
    return doc


def airflow_registry() -> list[dict[str, Any]]:
    """Airflow's metric registry (core and task SDK), read from the installed package without importing it."""
    spec = importlib.util.find_spec("airflow")
    assert spec and spec.submodule_search_locations, "apache-airflow is not installed"
    package = Path(next(iter(spec.submodule_search_locations)))
    files = [package / p / "observability/metrics/metrics_template.yaml" for p in ("_shared", "sdk/_shared")]
    metrics = [m for f in files if f.is_file() for m in yaml.safe_load(f.read_text())["metrics"]]
    assert metrics, f"no metrics_template.yaml under {package}"
    return metrics


def glob_regex(pattern: str) -> re.Pattern[str]:
    """statsd-exporter's glob match: each ``*`` is one dot-free part, the rest literal, the whole name."""
    return re.compile("^" + "([^.]*)".join(re.escape(part) for part in pattern.split("*")) + "$")


def statsd_map(name: str, mappings: list[dict[str, Any]]) -> tuple[str, set[str]]:
    """The Prometheus metric name and label names statsd-exporter gives the StatsD metric ``name``: the first mapping
    that matches, else the name with every character outside [a-zA-Z0-9_] as ``_``."""
    for mapping in mappings:
        if mapping.get("match_type") == "regex":
            match = re.search(mapping["match"], name)
        else:
            match = glob_regex(mapping["match"]).match(name)
        if match is None:
            continue
        if mapping.get("action", "map") != "map":
            return "", set()  # action: drop
        template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", mapping["name"])  # $1, ${1} -> \g<1>
        return match.expand(template), set(mapping.get("labels") or {})
    return re.sub(r"[^a-zA-Z0-9_]", "_", name), set()


def airflow_exported() -> dict[str, set[str]]:
    """Sample name -> label names of every metric Airflow's registry lists, as Prometheus scrapes it from the
    statsd-exporter with the mapping of helm-values/airflow.yaml (and its [metrics] legacy_names_on, prefix)."""
    values = airflow_values()
    mappings = values["statsd"]["overrideMappings"]
    config = values.get("config", {}).get("metrics", {})
    prefix = config.get("statsd_prefix", CHART_STATSD_PREFIX)
    legacy = str(config.get("legacy_names_on", "True")).lower() == "true"  # Airflow's default: on
    exported: dict[str, set[str]] = {}
    for metric in airflow_registry():
        names = [metric["name"]] + ([metric["legacy_name"]] if legacy and metric.get("legacy_name", "-") != "-" else [])
        for stat in names:
            filled = re.sub(r"\{(\w+)\}", lambda m: f"some_{m.group(1)}", stat)
            name, labels = statsd_map(f"{prefix}.{filled}", mappings)
            for suffix in EXPORTED_SUFFIXES[metric["type"]] if name else ():
                extra = SUMMARY_LABELS[suffix] if metric["type"] == "timer" else set()
                exported.setdefault(name + suffix, set()).update(labels | extra)
    return exported


def dag_task_ids(stage: str) -> set[str]:
    """The task ids of the readmission model's ``stage`` DAG, as the DAG factory builds it."""
    from airloop.dag_factory import BUILDERS
    from airloop.settings import get_settings

    settings = get_settings("readmission")
    return set(BUILDERS[stage](settings.catalog.specs["readmission"], settings).task_ids)


# --- the tests ------------------------------------------------------------------------------------------------------


def test_the_tokeniser_finds_metrics_labels_and_nothing_else() -> None:
    query = parse(
        'histogram_quantile(0.99, sum by (le, endpoint) (rate(a_bucket{endpoint=~"/v1/(x|y)", s!="5.."}[5m])))'
        " / on (endpoint) group_left sum without (x) (increase(b_total[1h] offset 5m)) > bool 0 and c or d"
    )
    assert query.selectors == [
        ("a_bucket", {"endpoint": ("=~", "/v1/(x|y)"), "s": ("!=", "5..")}),
        ("b_total", {}),
        ("c", {}),
        ("d", {}),
    ]
    assert query.grouping == {"le", "endpoint", "x"}
    with pytest.raises(AssertionError):
        parse('sum({__name__="a"})')


def test_the_configmap_ships_the_dashboard_json_as_it_is() -> None:
    text = DASHBOARD.read_text()
    assert CONFIGMAP.read_text() == configmap_text(text), "run `.venv/bin/python -m tests.test_dashboard`"
    (doc,) = [d for d in yaml.safe_load_all(CONFIGMAP.read_text()) if d]
    assert doc["kind"] == "ConfigMap" and doc["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert doc["data"] == {CONFIGMAP_KEY: text}
    from tests.test_deploy_files import secret_literals

    assert not secret_literals(doc)


def test_every_query_uses_the_datasource_variable_and_the_model_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"model", "variant"} <= set(variables)
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    queried = [p for p in panels(board) if p.get("targets")]
    assert queried, "the dashboard has no queries"
    for panel in queried:
        assert panel["datasource"] == datasource, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
            assert "${model}" in target["expr"] or 'kind="rate_limited"' in target["expr"], (
                f"{panel['title']}: not narrowed to the selected models: {target['expr']}"
            )
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_metric_the_dashboard_queries_is_exported(service: Exported) -> None:
    """Each selected metric is in the service's /metrics or Airflow's mapped metrics, with the labels the query uses;
    fixed label values are ones the service reports (error kinds: ones its code raises)."""
    airflow = airflow_exported()
    kinds = error_kinds_in_code()
    problems = []
    for expr in expressions(dashboard()):
        query = parse(expr)
        assert query.metrics, f"no metric in {expr!r}"
        known: set[str] = set()
        for metric, matchers in query.selectors:
            if metric in service.labels:
                labels = service.labels[metric]
            elif metric in airflow:
                labels = airflow[metric]
            else:
                problems.append(f"{metric}: neither in the service's /metrics nor exported by Airflow ({expr})")
                continue
            known |= labels
            for label, (operator, value) in matchers.items():
                if label not in labels:
                    problems.append(f"{metric} has no label {label!r} (it has {sorted(labels)})")
                words = plain_words(value) if operator in ("=", "=~") and metric in service.labels else None
                for word in words or ():
                    seen = service.values.get((metric, label), set())
                    if word not in seen and not (label == "kind" and word in kinds):
                        problems.append(f"{metric}{{{label}={word!r}}}: the service reports {sorted(seen)}")
        if query.grouping - known - {"le"}:
            problems.append(f"grouping by {sorted(query.grouping - known)}, not labels of {query.metrics} ({expr})")
    assert not problems, "\n".join(problems)


def test_the_loop_panels_select_real_dags_and_tasks() -> None:
    """dag_id and task_id matchers on Airflow's metrics name the DAG factory's stages and the tasks of those DAGs."""
    from airloop.spec.schema import STAGES

    airflow = airflow_exported()
    selected: dict[str, set[str]] = {}
    for expr in expressions(dashboard()):
        for metric, matchers in parse(expr).selectors:
            if metric not in airflow:
                continue
            operator, dag = matchers["dag_id"]
            assert operator == "=~" and dag.startswith("(${model})_"), f"{metric}: dag_id by the model variable"
            stages = dag.removeprefix("(${model})_").strip("()").split("|")
            assert set(stages) <= set(STAGES), f"not DAG factory stages: {set(stages) - set(STAGES)}"
            if "task_id" in matchers:
                (stage,) = stages
                selected.setdefault(stage, set()).update(plain_words(matchers["task_id"][1]) or ["<a regex>"])
    assert {"drift", "ab_evaluate"} <= set(selected), "the drift and A/B panels read task outcomes"
    for stage, tasks in selected.items():
        assert tasks <= dag_task_ids(stage), f"not tasks of <model>_{stage}: {tasks - dag_task_ids(stage)}"


def test_the_airflow_mapping_keeps_the_charts_own_and_maps_what_the_dashboard_reads() -> None:
    """The mapping keeps the chart's metric names (dagrun durations among them) and names task outcomes once per
    (dag, task, state), not one metric per task."""
    mappings = airflow_values()["statsd"]["overrideMappings"]
    assert statsd_map("airflow.dagrun.duration.success.m_drift", mappings) == ("airflow_dagrun_duration", {"dag_id"})
    assert statsd_map("airflow.dagrun.duration.failed.m_drift", mappings) == ("airflow_dagrun_failed", {"dag_id"})
    assert statsd_map("airflow.ti.finish.m_drift.decide.success", mappings) == (
        "airflow_ti_finish_total",
        {"dag_id", "task_id", "state"},
    )
    assert statsd_map("airflow.pool.open_slots.default_pool", mappings) == ("airflow_pool_open_slots", {"pool"})
    assert statsd_map("airflow.no.such.metric", mappings) == ("airflow_no_such_metric", set())
    assert airflow_values()["statsd"]["enabled"] is True
    # The DAG and task ids are in the legacy names only: plain StatsD drops the new names' tags.
    assert airflow_values()["config"]["metrics"]["legacy_names_on"] == "True"


def write_configmap() -> None:
    CONFIGMAP.write_text(configmap_text(DASHBOARD.read_text()))
    print(f"wrote {CONFIGMAP.relative_to(ROOT)} from {DASHBOARD.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    write_configmap()
