"""The seed document's usage examples, in Python against a running metaloop: read the
snapshot's global KPIs and goal gaps (0.87 success against 0.95 → gap 0.08; 42.3 s recovery
against 30 s → gap 12.3), register a custom policy at run time, and approve the pending
high-impact directive it issues."""

import time
from datetime import datetime, timezone

import pytest

from metaloop_adapter.client import ApiError, MetaPolicy
from metaloop_adapter.http import HttpAdapter, wait_until_durable

from conftest import DEFAULT_GOALS

# Giving any policy replaces the defaults: one disabled policy leaves the custom one alone.
NO_DEFAULT_POLICIES = """
[[policies]]
id = "placeholder"
name = "Placeholder"
enabled = false
[policies.condition]
goal_gap_metric = "compliance_score"
goal_gap_threshold = 50.0
[policies.directive_template]
type = "REQUEST_REVIEW"
action = "review"
target = "worst_domain"
knob = "review"
parameters = { value = true }
target_kpi = "compliance_score"
impact_level = "MINIMAL"
"""

MY_KPI_GOAL = """
[[goals]]
kpi = "my_kpi"
target = 1.0
direction = "higher_is_better"
"""


def wait_for(what, fn, timeout=40.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_the_seed_usage_examples(daemon_factory):
    d = daemon_factory(cycle="2s", extra=DEFAULT_GOALS + MY_KPI_GOAL + NO_DEFAULT_POLICIES).start()
    viewer, admin, ops = d.api("viewer"), d.api("admin"), d.api("ops_engineer")
    adapter = HttpAdapter(d.api("adapter"), viewer)

    # the seed's snapshot: success 87 % against 95 %, recovery 42.3 s against 30 s — over four
    # cycles and 2,400 recoveries, the baseline a directive is later verified against
    for chunk in range(4):
        now = datetime.now(timezone.utc)
        events = [
            d.signer.recovery(domain="application", incident_id=f"inc-{chunk}-{i}", playbook="restart-service",
                              duration_s=42.3, succeeded=i % 100 < 87, id=f"rec-{chunk}-{i}", time=now)
            for i in range(600)
        ]
        assert all(r.accepted for r in adapter.send(events))
        d.wait_for_cycle(viewer.status()["cycle"])
    assert wait_until_durable(adapter, timeout=30)
    gaps = viewer.goal_gaps()
    kpis = viewer.global_kpis()
    assert kpis["overall_success_rate"] == pytest.approx(0.87)
    assert gaps["overall_success_rate"] == pytest.approx(0.08)
    assert kpis["mean_recovery_time_seconds"] == pytest.approx(42.3)
    assert gaps["mean_recovery_time_seconds"] == pytest.approx(12.3)

    # registering a custom policy (the seed's MetaPolicy); the planner knob it turns is
    # HIGH impact here, so each directive waits for a human
    policy = MetaPolicy(
        policy_id="custom_policy",
        name="My Custom Policy",
        condition={"goal_gap_metric": "my_kpi", "goal_gap_threshold": 0.1},
        directive_template={
            "type": "ADJUST_THRESHOLD",
            "action": "custom_action",
            "target": "worst_domain",
            "knob": "custom.threshold",
            "parameters": {"adjustment": 0.05},
            # verification needs a built-in KPI to measure the directive by
            "target_kpi": "overall_success_rate",
            "impact_level": "HIGH",
        },
    )
    with pytest.raises(ApiError) as refused:
        viewer.register_policy(policy)  # a viewer may not
    assert refused.value.status == 403
    admin.register_policy(policy)
    registered = {p["policy"]["id"]: p for p in viewer.policies()}
    assert registered["custom_policy"]["changed_at_run_time"]
    assert registered["custom_policy"]["policy"]["condition"]["goal_gap_threshold"] == 0.1

    # my_kpi reported at about 0.7 against its goal of 1.0: a gap of 0.3 ≥ 0.1
    now = datetime.now(timezone.utc)
    reports = [
        d.signer.kpi(domain="application", name="my_kpi", value=0.65 + 0.1 * (i % 11) / 10, id=f"kpi-{i}", time=now)
        for i in range(300)
    ]
    assert all(r.accepted for r in adapter.send(reports))
    assert wait_until_durable(adapter, timeout=30)
    assert viewer.goal_gaps()["my_kpi"] == pytest.approx(0.3, abs=0.01)

    # manual directive approval of the pending high-impact directive
    pending = wait_for(
        "a pending directive of custom_policy",
        lambda: viewer.directives(status="pending_approval", policy="custom_policy"),
    )
    directive_id = pending[0]["id"]
    assert pending[0]["directive"]["knob"] == "custom.threshold"
    with pytest.raises(ApiError) as not_an_approver:
        viewer.approve_directive(directive_id=directive_id)
    assert not_an_approver.value.status == 403
    view = ops.approve_directive(directive_id=directive_id, approved_by="ops_engineer")
    assert [a["approver"] for a in view["approvals"]] == ["ops_engineer"]
    assert viewer.directive(directive_id)["status"] == "published"
    assert d.stop() == 0
