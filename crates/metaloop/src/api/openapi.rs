//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the same route table
//! the router is built from, so the two cannot drift apart.

use serde_json::{Value, json};

/// One route's documentation.
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Roles that may call it; empty = no authentication.
    pub roles: &'static [&'static str],
    /// Query parameters: (name, description).
    pub query: &'static [(&'static str, &'static str)],
    /// Request body schema name in components, if any.
    pub body: Option<&'static str>,
    /// Success status.
    pub ok: u16,
}

const READ: &[&str] = &["viewer", "operator", "approver", "admin"];

/// Every route the server serves, documented.
pub const ROUTE_DOCS: &[RouteDoc] = &[
    RouteDoc {
        method: "get",
        path: "/healthz",
        summary: "Liveness",
        roles: &[],
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/readyz",
        summary: "Readiness: the supervisor answers",
        roles: &[],
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (OpenMetrics text)",
        roles: &[],
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/openapi.json",
        summary: "This document",
        roles: &[],
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/v1/status",
        summary: "Goals against KPIs at a glance, directive counts, firing alerts",
        roles: READ,
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/v1/goals",
        summary: "Strategic goals",
        roles: READ,
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/v1/snapshots",
        summary: "Recent cross-domain snapshots with goal gaps and analysis, newest first",
        roles: READ,
        query: &[("limit", "at most this many (default 10, max 1000)")],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/v1/snapshots/latest",
        summary: "The latest snapshot",
        roles: READ,
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/v1/directives",
        summary: "Directives, newest first, with filters",
        roles: READ,
        query: &[
            ("status", "lifecycle state, e.g. pending_approval"),
            ("policy", "policy id"),
            ("domain", "target domain"),
            ("type", "directive type, e.g. ADJUST_THRESHOLD"),
            ("limit", "at most this many (default 100)"),
        ],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/v1/directives/{id}",
        summary: "One directive with its whole lifecycle (id or unique prefix)",
        roles: READ,
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "post",
        path: "/v1/directives/{id}/approve",
        summary: "Approve a directive waiting for approval",
        roles: &["approver", "admin"],
        query: &[],
        body: Some("Note"),
        ok: 200,
    },
    RouteDoc {
        method: "post",
        path: "/v1/directives/{id}/reject",
        summary: "Reject a directive waiting for approval",
        roles: &["approver", "admin"],
        query: &[],
        body: Some("Note"),
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/v1/policies",
        summary: "Meta-policies with their track records",
        roles: READ,
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "post",
        path: "/v1/policies",
        summary: "Register (or replace) a policy",
        roles: &["admin"],
        query: &[],
        body: Some("MetaPolicy"),
        ok: 201,
    },
    RouteDoc {
        method: "post",
        path: "/v1/policies/{id}/enable",
        summary: "Enable a policy",
        roles: &["operator", "admin"],
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "post",
        path: "/v1/policies/{id}/disable",
        summary: "Disable a policy",
        roles: &["operator", "admin"],
        query: &[],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/v1/ledger/records",
        summary: "Ledger records in order",
        roles: READ,
        query: &[
            ("from", "first seq (default 1)"),
            ("limit", "at most this many (default 100, max 1000)"),
        ],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "get",
        path: "/v1/ledger/checkpoints",
        summary: "Signed ledger checkpoints",
        roles: READ,
        query: &[
            ("after", "only checkpoints after this seq"),
            ("limit", "at most this many (default 100, max 1000)"),
        ],
        body: None,
        ok: 200,
    },
    RouteDoc {
        method: "post",
        path: "/v1/events",
        summary: "Signed spine events (one CloudEvent or a batch); a result per event",
        roles: &["adapter"],
        query: &[],
        body: Some("CloudEvents"),
        ok: 200,
    },
];

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTE_DOCS {
        let mut params: Vec<Value> = r
            .query
            .iter()
            .map(|(n, d)| json!({ "name": n, "in": "query", "required": false, "description": d, "schema": { "type": "string" } }))
            .collect();
        if r.path.contains("{id}") {
            params.push(json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }));
        }
        let mut responses = serde_json::Map::new();
        responses.insert(r.ok.to_string(), json!({ "description": "success", "content": { "application/json": { "schema": {} } } }));
        if !r.query.is_empty() || r.body.is_some() {
            responses.insert("400".into(), error_response("bad input; `field` names it"));
        }
        if !r.roles.is_empty() {
            responses.insert(
                "401".into(),
                error_response("missing or unknown bearer token"),
            );
            responses.insert(
                "403".into(),
                error_response(&format!(
                    "the principal lacks a role: one of {}",
                    r.roles.join(", ")
                )),
            );
        }
        if r.path.contains("{id}") || r.path.ends_with("latest") {
            responses.insert("404".into(), error_response("no such resource"));
        }
        if r.path.contains("approve") || r.path.contains("reject") {
            responses.insert(
                "409".into(),
                error_response("not waiting for approval, or already approved by this principal"),
            );
        }
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": responses,
        });
        if !r.roles.is_empty() {
            op["security"] = json!([{ "bearer": [] }]);
            op["x-roles"] = json!(r.roles);
        }
        if let Some(b) = r.body {
            op["requestBody"] = json!({
                "required": b != "Note",
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{b}") } } }
            });
        }
        paths.entry(r.path.to_string()).or_insert_with(|| json!({}))[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "metaloop", "version": env!("CARGO_PKG_VERSION"), "description": "The meta-loop supervisor's API." },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error", "message"], "properties": {
                    "error": { "type": "string" }, "message": { "type": "string" }, "field": { "type": "string" } } },
                "Note": { "type": "object", "additionalProperties": false, "properties": { "note": { "type": "string" } } },
                "MetaPolicy": { "type": "object", "required": ["id", "name", "condition", "directive_template"] },
                "CloudEvents": { "oneOf": [ { "type": "object" }, { "type": "array", "items": { "type": "object" } } ] }
            }
        }
    })
}
