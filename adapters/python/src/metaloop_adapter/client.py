"""A small client of metaloop's HTTP API (``/v1/...``, bearer tokens): status and goal gaps,
snapshots, directives and their approval, policies registered at run time, the ledger, and
``POST /v1/events``."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping, Sequence

from .events import BATCH_CONTENT_TYPE, SignedEvent, batch_body


class ApiError(Exception):
    """A non-2xx answer: the HTTP status and metaloop's JSON error (``error``, ``message``,
    ``field``) when there is one."""

    def __init__(self, status: int, body: bytes, method: str, path: str):
        self.status = status
        self.body = body
        self.method = method
        self.path = path
        try:
            self.error: dict[str, Any] = json.loads(body)
            if not isinstance(self.error, dict):
                self.error = {}
        except ValueError:
            self.error = {}
        detail = self.error.get("message") or body.decode("utf-8", "replace")[:200]
        super().__init__(f"{method} {path}: {status} {detail}")

    @property
    def kind(self) -> str | None:
        return self.error.get("error")

    @property
    def field(self) -> str | None:
        return self.error.get("field")


@dataclass(frozen=True)
class EventResult:
    """What metaloop answered for one posted event."""

    id: str | None
    source: str | None
    result: str  # accepted | duplicate | rejected
    reason: str | None = None
    message: str | None = None

    @property
    def accepted(self) -> bool:
        return self.result == "accepted"


@dataclass
class MetaPolicy:
    """A meta-policy as the API takes it (the seed's ``MetaPolicy``): a condition such as
    ``{"goal_gap_metric": "my_kpi", "goal_gap_threshold": 0.1}`` and a directive template
    (``type``, ``action``, ``target``, ``knob``, ``parameters``, ``target_kpi``,
    ``impact_level`` …). Optional fields left as None take metaloop's defaults."""

    policy_id: str
    name: str
    condition: Mapping[str, Any]
    directive_template: Mapping[str, Any]
    description: str = ""
    confidence_threshold: float | None = None
    min_evidence: float | None = None
    approval_override: str | None = None
    for_cycles: int | None = None
    cooldown_cycles: int | None = None
    priority: int | None = None
    enabled: bool | None = None
    mode: str | None = None  # "live" (default) or "shadow": decided and recorded, never published

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["id"] = d.pop("policy_id")
        d["condition"] = dict(self.condition)
        d["directive_template"] = dict(self.directive_template)
        return {k: v for k, v in d.items() if v is not None}


class ApiClient:
    """metaloop's API at ``base_url`` with a bearer ``token``."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> Any:
        """One request; returns the decoded JSON answer or raises :class:`ApiError`."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read(), method, path) from None
        return json.loads(raw) if raw else None

    # -- reading the supervisor

    def status(self) -> dict[str, Any]:
        """``GET /v1/status``: cycle, goals with their value and gap, directive counts, alerts."""
        return self.request("GET", "/v1/status")

    def goal_gaps(self) -> dict[str, float]:
        """The latest snapshot's goal gaps by KPI (positive = worse than target), as in the
        seed's ``snapshot.goal_gaps``. Raises :class:`ApiError` (404) before the first cycle."""
        return dict(self.latest_snapshot()["goal_gaps"])

    def global_kpis(self) -> dict[str, float]:
        """The latest snapshot's global KPIs, as in the seed's ``snapshot.global_kpis``."""
        return dict(self.latest_snapshot()["global_kpis"])

    def latest_snapshot(self) -> dict[str, Any]:
        """``GET /v1/snapshots/latest``."""
        return self.request("GET", "/v1/snapshots/latest")

    def snapshots(self, limit: int | None = None) -> list[dict[str, Any]]:
        """``GET /v1/snapshots``: recent snapshots, newest first."""
        return self.request("GET", "/v1/snapshots", query={"limit": limit})

    def goals(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/goals")

    # -- directives

    def directives(
        self,
        *,
        status: str | None = None,
        policy: str | None = None,
        domain: str | None = None,
        type: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """``GET /v1/directives``, newest first, filtered."""
        return self.request(
            "GET",
            "/v1/directives",
            query={"status": status, "policy": policy, "domain": domain, "type": type, "limit": limit},
        )

    def directive(self, directive_id: str) -> dict[str, Any]:
        """``GET /v1/directives/{id}`` (an unambiguous prefix of the id will do)."""
        return self.request("GET", "/v1/directives/" + urllib.parse.quote(directive_id, safe=""))

    def approve_directive(self, directive_id: str, approved_by: str | None = None, note: str = "") -> dict[str, Any]:
        """Approves a pending directive as the token's principal (the seed's
        ``approve_directive(directive_id=…, approved_by=…)``). ``approved_by``, when given, must
        be that principal: metaloop records who approved from the token, never from the body."""
        return self._decide(directive_id, "approve", approved_by, note)

    def reject_directive(self, directive_id: str, rejected_by: str | None = None, note: str = "") -> dict[str, Any]:
        """Rejects a pending directive as the token's principal."""
        return self._decide(directive_id, "reject", rejected_by, note)

    def _decide(self, directive_id: str, verb: str, who: str | None, note: str) -> dict[str, Any]:
        view = self.request(
            "POST",
            f"/v1/directives/{urllib.parse.quote(directive_id, safe='')}/{verb}",
            json_body={"note": note},
        )
        if who is not None:
            names = [a.get("approver") for a in view.get("approvals", [])]
            if verb == "approve" and who not in names:
                raise ValueError(f"approved, but as {names!r}, not {who!r}: the token decides who approves")
        return view

    # -- policies

    def policies(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/policies")

    def register_policy(self, policy: MetaPolicy | Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/policies``: registers (or replaces) a policy at run time (admin role)."""
        payload = policy.to_json() if isinstance(policy, MetaPolicy) else dict(policy)
        return self.request("POST", "/v1/policies", json_body=payload)

    def enable_policy(self, policy_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/policies/{urllib.parse.quote(policy_id, safe='')}/enable")

    def disable_policy(self, policy_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/policies/{urllib.parse.quote(policy_id, safe='')}/disable")

    # -- the ledger

    def ledger_records(self, start: int = 1, limit: int = 1000) -> list[dict[str, Any]]:
        """``GET /v1/ledger/records?from=…&limit=…``: records in sequence order."""
        return self.request("GET", "/v1/ledger/records", query={"from": start, "limit": limit})

    def iter_ledger(self, start: int = 1, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every record from ``start`` on, page by page."""
        while True:
            batch = self.ledger_records(start, page)
            yield from batch
            if len(batch) < page:
                return
            start = batch[-1]["seq"] + 1

    # -- events

    def post_events(self, events: Sequence[SignedEvent]) -> list[EventResult]:
        """``POST /v1/events`` with a batch (adapter role): one result per event, in order."""
        if not events:
            return []
        answer = self.request("POST", "/v1/events", body=batch_body(events), content_type=BATCH_CONTENT_TYPE)
        return [
            EventResult(
                id=r.get("id"),
                source=r.get("source"),
                result=r["result"],
                reason=r.get("reason"),
                message=r.get("message"),
            )
            for r in answer["results"]
        ]
