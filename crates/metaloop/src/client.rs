//! The command-line client of a running daemon or demo: `metaloop status`,
//! `metaloop directives …`, `metaloop policies …`.

use serde_json::Value;

/// Where and who.
#[derive(Debug, Clone)]
pub struct Client {
    pub server: String,
    pub token: String,
    http: reqwest::Client,
}

/// A failed call: the server refused (exit 2) or could not be reached (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unreachable(String),
}

impl ClientError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused(_) => 2,
            ClientError::Unreachable(_) => 1,
        }
    }
}

impl Client {
    /// A client for `server` (e.g. `http://127.0.0.1:7171`) with a bearer token.
    pub fn new(server: &str, token: &str) -> Client {
        Client {
            server: server.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            http: crate::http::client(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            ClientError::Unreachable(format!("cannot reach metaloop at {}: {e}", self.server))
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let msg = body["message"].as_str().unwrap_or("no message").to_string();
        let field = body["field"]
            .as_str()
            .map(|f| format!(" (field {f})"))
            .unwrap_or_default();
        let err = format!(
            "{} {}: {msg}{field}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        if status.is_client_error() {
            Err(ClientError::Refused(err))
        } else {
            Err(ClientError::Unreachable(err))
        }
    }

    /// GET a path.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        self.send(self.http.get(format!("{}{path}", self.server)).query(query))
            .await
    }

    /// POST JSON to a path.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(self.http.post(format!("{}{path}", self.server)).json(body))
            .await
    }
}

/// Goals vs KPIs at a glance.
pub fn render_status(v: &Value) -> String {
    let mut out = format!(
        "environment {} — cycle {} — {} directive(s) in flight, {} awaiting approval\n",
        v["environment"].as_str().unwrap_or("?"),
        v["cycle"],
        v["directives"]["in_flight"],
        v["directives"]["pending_approval"]
    );
    if let Some(role) = v["role"].as_str() {
        let leader = &v["leader"];
        match leader["epoch"].as_u64() {
            Some(0) | None => out.push_str(&format!("role {role} (running alone)\n")),
            Some(epoch) => out.push_str(&format!(
                "role {role} — leader {} (lease epoch {epoch})\n",
                leader["holder"].as_str().unwrap_or("none yet")
            )),
        }
    }
    if v["shadow_mode"].as_bool() == Some(true) {
        out.push_str("SHADOW MODE: decisions are recorded, nothing is published\n");
    }
    if let Some(n) = v["directives"]["shadow"].as_u64().filter(|n| *n > 0) {
        out.push_str(&format!(
            "{n} shadow (would-have) directive(s): `metaloop directives list` shows them\n"
        ));
    }
    out.push_str(&format!(
        "{:<30} {:>10} {:>10} {:>10}  {}\n",
        "goal", "value", "target", "gap", "status"
    ));
    for g in v["goals"].as_array().into_iter().flatten() {
        let f = |x: &Value| x.as_f64().map_or("—".to_string(), |x| format!("{x:.3}"));
        let state = match g["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "no data",
        };
        out.push_str(&format!(
            "{:<30} {:>10} {:>10} {:>10}  {state}\n",
            g["kpi"].as_str().unwrap_or("?"),
            f(&g["value"]),
            f(&g["target"]),
            f(&g["gap"])
        ));
    }
    for a in v["alerts"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "ALERT {}: {}\n",
            a["kind"].as_str().unwrap_or("?"),
            a["message"].as_str().unwrap_or("")
        ));
    }
    out
}

/// One line per directive.
pub fn render_directives(v: &Value) -> String {
    let mut out = format!(
        "{:<38} {:<18} {:<14} {:<34} {:<9} {}\n",
        "id", "type", "domain", "knob", "impact", "status"
    );
    for d in v.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<38} {:<18} {:<14} {:<34} {:<9} {}\n",
            d["id"].as_str().unwrap_or("?"),
            d["directive"]["type"].as_str().unwrap_or("?"),
            d["directive"]["target_domain"].as_str().unwrap_or("?"),
            d["directive"]["knob"].as_str().unwrap_or("?"),
            d["effective_impact"].as_str().unwrap_or("?"),
            match (d["status"].as_str(), d["directive"]["shadow"].as_bool()) {
                (Some(s), Some(true)) if !s.starts_with("shadow") => format!("{s} (shadow)"),
                (Some(s), _) => s.to_string(),
                (None, _) => "?".to_string(),
            }
        ));
    }
    out
}

/// A policy's history as text: one line per record (time, principal, what), the changed
/// fields of an edit indented under it.
pub fn render_policy_history(records: &Value) -> String {
    let mut out = String::from("history:\n");
    for r in records.as_array().into_iter().flatten() {
        let time = metaloop_core::time::Timestamp(r["time_ms"].as_i64().unwrap_or(0));
        let p = &r["payload"];
        let what = match r["action"].as_str().unwrap_or("?") {
            "policy.registered" => {
                let changes = p["changes"].as_array().map_or(0, Vec::len);
                if changes == 0 {
                    "registered".to_string()
                } else {
                    format!("edited ({changes} field(s))")
                }
            }
            "policy.enabled" => {
                if p["enabled"].as_bool() == Some(true) {
                    "enabled".into()
                } else {
                    "disabled".into()
                }
            }
            "policy.track_record_reset" => format!(
                "track record reset (had {} verified, {} failed): {}",
                p["previous"]["verified"],
                p["previous"]["failed"],
                p["note"].as_str().unwrap_or("")
            ),
            "learning.track_record" => format!(
                "track record after directive {}: {} verified, {} failed, {} inconclusive",
                p["directive_id"].as_str().map_or("?", crate::short_id),
                p["track_record"]["verified"],
                p["track_record"]["failed"],
                p["track_record"]["inconclusive"]
            ),
            other => other.to_string(),
        };
        out.push_str(&format!(
            "  {:>6}  {time}  {:<16} {what}\n",
            r["seq"],
            r["actor"].as_str().unwrap_or("?")
        ));
        for ch in p["changes"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "          {}: {} -> {}\n",
                ch["field"].as_str().unwrap_or("?"),
                ch["before"],
                ch["after"]
            ));
        }
    }
    out
}
