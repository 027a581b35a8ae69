//! The dashboard in a real headless Chromium, driven through WebDriver (Debian's `chromium`
//! and `chromium-driver`) against a running `metaloop demo --listen`: a viewer sees a pending
//! MODERATE directive but its approval is refused; an approver signs in, finds it in the
//! inbox, approves it, and sees it published — checked through the JSON API and the ledger
//! too. Every page renders without console errors, and a screenshot of each is written to
//! `$METALOOP_SCREENSHOTS` (default: `dashboard-screenshots` in Cargo's test temp directory).
//!
//! Without Chromium or its driver the test prints `skipping …` and passes, except under
//! `CI=true`, where it fails.

use base64::Engine;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// A MODERATE policy that fires on the seed scenario's success gap; in production MODERATE
/// needs one approval.
const CONFIG: &str = r#"
environment = "production"

[approval]
ttl_seconds = 86400

[[approval.rules]]
impact = "LOW"
approvals = 0
notify = true

[[approval.rules]]
impact = "MODERATE"
approvals = 1
environments = ["production"]
notify = true

[[approval.rules]]
impact = "HIGH"
approvals = 1
approvals_elsewhere = 1

[[approval.rules]]
impact = "CRITICAL"
approvals = 2
approvals_elsewhere = 2
review_note = true

[[policies]]
id = "raise_threshold_moderate"
name = "Raise the planner threshold (MODERATE impact)"
for_cycles = 1
cooldown_cycles = 100
[policies.condition]
goal_gap_metric = "overall_success_rate"
goal_gap_threshold = 0.05
[policies.directive_template]
type = "ADJUST_THRESHOLD"
action = "increase_playbook_confidence_threshold"
target = "worst_domain"
knob = "planner.confidence_threshold"
parameters = { adjustment = 0.05 }
target_kpi = "overall_success_rate"
impact_level = "MODERATE"
side_effects = { autonomy_rate = 0.10, human_intervention_rate = 0.05, mean_recovery_time_seconds = 0.15 }
"#;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Chromium and its driver, or `None` (a skip; a failure under `CI=true`).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = which(&["chromium", "chromium-browser"]);
    let driver = which(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("chromium and chromedriver are not installed; CI needs them: {INSTALL}");
            }
            eprintln!(
                "skipping the dashboard browser test: chromium or chromedriver is not installed (install with: {INSTALL})"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(start.elapsed() < timeout, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A W3C WebDriver session, spoken over HTTP.
struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    async fn start(base: &str, chromium: &Path) -> Driver {
        let http = metaloop::http::client();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1440,1000", "--hide-scrollbars", "--force-device-scale-factor=1"],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Driver {
            http,
            base: base.to_string(),
            session,
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {method} {path}: {v}");
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    async fn url(&self) -> String {
        self.cmd("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn exists(&self, css: &str) -> bool {
        let v = self
            .cmd(
                "POST",
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v.as_array().is_some_and(|a| !a.is_empty())
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.cmd("GET", &format!("/element/{e}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let e = self.find(css).await;
        self.cmd(
            "GET",
            &format!("/element/{e}/attribute/{name}"),
            Value::Null,
        )
        .await
        .as_str()
        .map(str::to_string)
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }

    /// Clicks a submit button and waits for the page it leads to.
    async fn submit(&self, css: &str) {
        self.script("window.__metaloop_old_page = true;").await;
        self.click(css).await;
        wait_for("the next page", Duration::from_secs(30), || async {
            let v = self
                .script("return window.__metaloop_old_page === undefined && document.readyState === 'complete';")
                .await;
            (v == Value::Bool(true)).then_some(())
        })
        .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// The browser console's entries since the last call (chromedriver's log endpoint).
    async fn console(&self) -> Vec<Value> {
        self.cmd("POST", "/se/log", json!({ "type": "browser" }))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Fails on any console error of the page shown now.
    async fn assert_no_console_errors(&self, page: &str) {
        let errors: Vec<Value> = self
            .console()
            .await
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect();
        assert!(errors.is_empty(), "{page}: console errors: {errors:?}");
    }

    /// The whole page as a PNG in `dir/name.png`.
    async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let height = self
            .script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);")
            .await
            .as_f64()
            .unwrap_or(1000.0)
            .clamp(600.0, 6000.0);
        self.cmd(
            "POST",
            "/window/rect",
            json!({ "width": 1440, "height": height as i64 + 20 }),
        )
        .await;
        let png = self.cmd("GET", "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        self.cmd(
            "POST",
            "/window/rect",
            json!({ "width": 1440, "height": 1000 }),
        )
        .await;
        path
    }

    async fn sign_in(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/signin")).await;
        self.type_into("#token", token).await;
        self.submit("#signin").await;
    }

    async fn quit(&self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}

/// The JSON API, as the test's own check.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_approves_in_the_browser_and_a_viewer_cannot() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let shots = std::env::var_os("METALOOP_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();

    // the demo, serving the API and the dashboard
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("moderate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _demo = Proc(
        Command::new(env!("CARGO_BIN_EXE_metaloop"))
            .args([
                "demo",
                "--scenario",
                "seed",
                "--seed",
                "1",
                "--cycles",
                "100000",
            ])
            .args(["--speed", "4", "--config", config.to_str().unwrap()])
            .args(["--data", data.path().join("run").to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let token = |who: &str| {
        std::fs::read_to_string(data.path().join("run").join(format!("api-token-{who}")))
            .map(|t| t.trim().to_string())
            .ok()
    };
    let http = metaloop::http::client();
    let ops_token = wait_for("the demo's tokens", Duration::from_secs(60), || {
        let t = token("viewer").and(token("ops"));
        async move { t }
    })
    .await;
    let api = Api {
        http: http.clone(),
        base: base.clone(),
        token: ops_token,
    };
    let pending_id = wait_for(
        "a pending MODERATE directive",
        Duration::from_secs(120),
        || async {
            let v = api
                .http
                .get(format!(
                    "{}/v1/directives?status=pending_approval",
                    api.base
                ))
                .bearer_auth(&api.token)
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()?;
            v.as_array()?
                .iter()
                .find(|d| d["effective_impact"] == "MODERATE")
                .and_then(|d| d["id"].as_str().map(str::to_string))
        },
    )
    .await;

    // the browser
    let driver_port = free_port();
    let _chromedriver = Proc(
        Command::new(&chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver_base = format!("http://127.0.0.1:{driver_port}");
    wait_for("chromedriver", Duration::from_secs(30), || async {
        let v: Value = http
            .get(format!("{driver_base}/status"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["value"]["ready"] == true).then_some(())
    })
    .await;
    let b = Driver::start(&driver_base, &chromium).await;

    // without a session every page leads to the sign-in form
    b.goto(&format!("{base}/approvals")).await;
    assert!(
        b.url().await.contains("/signin?next=/approvals"),
        "{}",
        b.url().await
    );
    b.assert_no_console_errors("sign-in").await;
    b.screenshot(&shots, "signin").await;
    b.type_into("#token", "not-a-token").await;
    b.submit("#signin").await;
    assert_eq!(b.text("#signin-error").await, "unknown token");
    let _ = b.console().await; // the 401 of a wrong token is expected

    // a viewer sees the pending directive and cannot approve it
    b.sign_in(&base, &token("viewer").unwrap()).await;
    b.goto(&format!("{base}/approvals")).await;
    assert!(b.text("#principal").await.starts_with("viewer"));
    let card = format!("#pending-{pending_id}");
    assert!(b.exists(&card).await, "the inbox shows {pending_id}");
    assert_eq!(
        b.attr(&card, "data-impact").await.as_deref(),
        Some("MODERATE")
    );
    assert!(b.exists(&format!("#cannot-approve-{pending_id}")).await);
    assert!(
        b.attr(&format!("#approve-{pending_id}"), "disabled")
            .await
            .is_some(),
        "a viewer's approve button is disabled"
    );
    b.assert_no_console_errors("approvals (viewer)").await;
    // a forged approval (the button enabled by hand) is refused by the server
    b.script(&format!(
        "document.getElementById('approve-{pending_id}').disabled = false;"
    ))
    .await;
    b.submit(&format!("#approve-{pending_id}")).await;
    assert!(
        b.text("h1").await.starts_with("403"),
        "{}",
        b.text("body").await
    );
    assert!(b.text("body").await.contains("viewer has roles"));
    let _ = b.console().await; // the 403 is the expected answer
    let d = api.get(&format!("/v1/directives/{pending_id}")).await;
    assert_eq!(d["status"], "pending_approval", "{d}");
    assert_eq!(d["approvals"], json!([]), "{d}");
    b.goto(&format!("{base}/approvals")).await;
    b.submit("#signout").await;
    assert!(b.url().await.contains("/signin"), "{}", b.url().await);

    // an approver approves it in the inbox
    b.sign_in(&base, &token("ops2").unwrap()).await;
    assert!(b.url().await.ends_with('/'), "{}", b.url().await);
    assert!(b.exists("#status").await && b.exists("svg.chart").await);
    b.assert_no_console_errors("overview").await;
    b.goto(&format!("{base}/approvals")).await;
    assert!(b.exists(&card).await);
    assert!(b.text(&card).await.contains("Routed by"));
    b.assert_no_console_errors("approvals").await;
    b.screenshot(&shots, "approvals").await;
    b.type_into(
        &format!("#note-{pending_id}"),
        "approved in the browser test",
    )
    .await;
    b.submit(&format!("#approve-{pending_id}")).await;
    assert!(
        b.url().await.contains(&format!("/directives/{pending_id}")),
        "{}",
        b.url().await
    );
    let timeline = b.text(".timeline").await;
    assert!(timeline.contains("published"), "{timeline}");
    assert!(timeline.contains("ops2"), "{timeline}");
    b.assert_no_console_errors("directive after approval").await;
    // the JSON API says the same
    let d = api.get(&format!("/v1/directives/{pending_id}")).await;
    let lifecycle: Vec<&str> = d["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[0].as_str())
        .collect();
    assert!(lifecycle.contains(&"published"), "{d}");
    assert_eq!(d["approvals"][0]["approver"], "ops2", "{d}");
    assert_eq!(d["approvals"][0]["note"], "approved in the browser test");
    // and the ledger holds the approval with its principal
    let approved = wait_for("the approval record", Duration::from_secs(30), || async {
        let mut from = 1;
        loop {
            let page = api
                .get(&format!("/v1/ledger/records?from={from}&limit=1000"))
                .await;
            let records = page.as_array()?.clone();
            if let Some(r) = records.iter().find(|r| {
                r["action"] == "directive.approved" && r["resource"] == pending_id.as_str()
            }) {
                return Some(r.clone());
            }
            if records.len() < 1000 {
                return None;
            }
            from = records.last()?["seq"].as_u64()? + 1;
        }
    })
    .await;
    assert_eq!(approved["actor"], "ops2", "{approved}");

    // every page renders without console errors; a screenshot of each
    for (name, path) in [
        ("overview", "/".to_string()),
        ("directives", "/directives".to_string()),
        ("policies", "/policies".to_string()),
        ("ledger", "/ledger".to_string()),
        ("alerts", "/alerts".to_string()),
        ("directive", format!("/directives/{pending_id}")),
    ] {
        b.goto(&format!("{base}{path}")).await;
        assert!(
            !b.text("h1").await.starts_with('4') && !b.text("h1").await.starts_with('5'),
            "{name}: {}",
            b.text("body").await
        );
        b.assert_no_console_errors(name).await;
        let shot = b.screenshot(&shots, name).await;
        eprintln!("screenshot {}", shot.display());
    }

    // the approved directive's verdict, drawn
    let verdict_id = wait_for("a verdict", Duration::from_secs(240), || async {
        let v = api.get("/v1/directives").await;
        v.as_array()?
            .iter()
            .find(|d| !d["verdict"].is_null() && d["directive"]["rollback_of"].is_null())
            .and_then(|d| d["id"].as_str().map(str::to_string))
    })
    .await;
    b.goto(&format!("{base}/directives/{verdict_id}")).await;
    assert!(b.exists("#verdict .verdict-line").await);
    assert!(b.exists("#target-test").await);
    assert!(b.exists("#verdict svg.chart").await);
    b.assert_no_console_errors("verdict").await;
    let shot = b.screenshot(&shots, "verdict").await;
    eprintln!("screenshot {}", shot.display());
    b.quit().await;
}
