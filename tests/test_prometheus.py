"""deploy/: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), which test every alert; the Grafana dashboard is valid
JSON; every metric the rules and the dashboard query is one the real gateway's
/metrics exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest
import yaml

from conftest import ROOT, User

RULES = ROOT / "deploy" / "prometheus" / "joinery-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "joinery-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "joinery.json"
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself for every target

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed (scripts/install-deps installs Debian's "
                             "prometheus package, which ships it)")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: joinery_* names, and `up`."""
    names = set(re.findall(r"\bjoinery_[a-z0-9_]+", expr))
    names |= {n for n in re.findall(r"\b(up)\s*\{", expr)}
    return names


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    check = subprocess.run([str(promtool), "check", "rules", str(RULES)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 10 rules found" in check.stdout
    test = subprocess.run([str(promtool), "test", "rules", str(RULE_TESTS)],
                          capture_output=True, text=True, timeout=60, cwd=RULE_TESTS.parent)
    assert test.returncode == 0, test.stdout + test.stderr
    assert test.stdout.strip().endswith("SUCCESS")


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    alerts = {rule["alert"] for rule in rules()}
    assert alerts == {
        "JoineryGatewayDown", "JoineryDatabaseUnreachable", "JoineryHighErrorRatio",
        "JoineryHighLatencyP99", "JoineryMailQueueGrowing", "JoineryMailFailures",
        "JoineryPoolSaturated", "JoineryRealtimeSocketsNearCap",
        "JoineryAuditDefaultPartitionRows", "JoineryNotifyQueueFilling"}
    fired = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test["alert_rule_test"] if not case["exp_alerts"]}
    assert fired == alerts
    assert quiet == alerts


def test_dashboard_is_valid_json_with_the_panels() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "joinery"
    assert [p["title"] for p in dash["panels"]] == [
        "Requests by route and status", "5xx ratio", "Latency quantiles",
        "p99 latency by route", "Connection pool", "Realtime", "Mail outbox", "Database"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def exposed(client: httpx.Client, user: User) -> set[str]:
    """The metric names of the real gateway's /metrics, after one API request (so
    the request counters and the histogram have samples)."""
    answer = client.post("/rest/v1/rpc/my_groups", json={}, headers=user.headers)
    assert answer.status_code == 200
    text = client.get("/metrics").text
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_queried_metric_is_exposed(client: httpx.Client, make_user) -> None:
    names = exposed(client, make_user())
    wanted: dict[str, set[str]] = {
        "rules": set().union(*(metric_names(r["expr"]) for r in rules())),
        "dashboard": set().union(*(metric_names(e) for e in dashboard_exprs())),
    }
    for where, metrics in wanted.items():
        missing = metrics - names - PROMETHEUS_OWN
        assert not missing, f"{where} query metrics /metrics lacks: {sorted(missing)}"
    assert len(wanted["dashboard"]) == 15
    assert wanted["rules"] - PROMETHEUS_OWN == {
        "joinery_database_unreachable", "joinery_http_requests_total",
        "joinery_http_request_duration_seconds_bucket", "joinery_mail_queue_depth",
        "joinery_mail_failed", "joinery_pool_requests_waiting", "joinery_pool_available",
        "joinery_realtime_sockets", "joinery_realtime_max_sockets", "joinery_audit_default_rows",
        "joinery_notify_queue_usage"}
