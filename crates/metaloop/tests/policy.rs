//! `metaloop policy test` and `metaloop policy backtest` as a user runs them: the shipped
//! default-policy tests pass; a wrong expectation fails with a diff and exit 1; JUnit output
//! counts what happened; a backtest of a demo's ledger with its own policies reproduces its
//! decisions exactly, and a changed policy shows where it would have differed.

mod common;

use common::{demo_report, metaloop};
use std::path::{Path, PathBuf};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn default_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies/default.test.toml")
}

#[test]
fn the_default_policy_tests_pass_and_cover_every_default_policy() {
    let file = default_tests();
    let out = metaloop(&["policy", "test", file.to_str().unwrap(), "--coverage"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("0 failed"), "{stdout}");
    for p in [
        "contain_dependency_cascade",
        "retire_failing_playbook",
        "improve_success_rate",
        "reduce_recovery_latency",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(p))
            .unwrap_or_else(|| panic!("no coverage line for {p}: {stdout}"));
        assert!(line.contains("fired"), "{line}");
        assert!(!line.contains("never fired"), "{line}");
    }
}

const WRONG: &str = r#"
[[tests]]
name = "expects a probe where the threshold goes up"
incidents = 400
[tests.series.application]
overall_success_rate = "0.80x7"
[tests.series.infrastructure]
overall_success_rate = "0.92x7"
[tests.series.security]
overall_success_rate = "0.92x7"
[[tests.expect]]
cycle = 5
directives = [{ type = "ENABLE_PROBE", domain = "application" }]

[[tests]]
name = "expects nothing in cycle 4, rightly"
incidents = 400
[tests.series.application]
overall_success_rate = "0.80x7"
[tests.series.infrastructure]
overall_success_rate = "0.92x7"
[[tests.expect]]
cycle = 4
directives = []
"#;

#[test]
fn a_wrong_expectation_fails_with_a_diff_and_junit_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.test.toml");
    std::fs::write(&file, WRONG).unwrap();
    let junit = dir.path().join("junit.xml");
    let out = metaloop(&[
        "policy",
        "test",
        file.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("FAIL  expects a probe"), "{stdout}");
    assert!(
        stdout.contains("PASS  expects nothing in cycle 4"),
        "{stdout}"
    );
    assert!(stdout.contains("cycle 5: directives differ"), "{stdout}");
    assert!(
        stdout.contains("- type ENABLE_PROBE, domain application"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+ ADJUST_THRESHOLD planner.confidence_threshold in application"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(
        xml.contains(
            "<testsuites name=\"metaloop policy test\" tests=\"2\" failures=\"1\" errors=\"0\""
        ),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 2, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert!(xml.contains("cycle 5: directives differ"), "{xml}");
    // balanced elements
    for tag in ["testsuites", "testsuite", "failure"] {
        assert_eq!(
            xml.matches(&format!("<{tag} ")).count(),
            xml.matches(&format!("</{tag}>")).count(),
            "{tag} in {xml}"
        );
    }
}

#[test]
fn a_broken_test_file_is_refused_with_where_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[tests]]\nname = \"x\"\nincidnets = 3\n",
            "3:1",
            "incidnets",
        ),
        (
            "[[tests]]\nname = \"x\"\n[tests.series.app]\noverall_success_rate = \"0.9x3 abc\"\n",
            "series app.overall_success_rate",
            "\"abc\"",
        ),
        (
            "[[tests]]\nname = \"x\"\n[tests.series.app]\noverall_success_rate = \"1.5\"\n",
            "outside 0..=1",
            "cycle 1",
        ),
        (
            "[[tests]]\nname = \"x\"\n[tests.series.app]\nmean_recovery_time = \"40\"\n",
            "did you mean mean_recovery_time_seconds",
            "x",
        ),
        (
            "[[policies]]\nid = \"p\"\nname = \"p\"\n[policies.condition]\ngoal_gap_metric = \"overall_success_rate\"\n[policies.directive_template]\ntype = \"ADJUST_THRESHOLD\"\n",
            ":6:1",
            "missing field `action`",
        ),
    ];
    for (i, (body, want, also)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.test.toml"));
        std::fs::write(&file, body).unwrap();
        let out = metaloop(&["policy", "test", file.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stdout}");
        assert!(
            stdout.contains(want) && stdout.contains(also),
            "case {i}: {stdout}"
        );
    }
}

fn decided(report: &serde_json::Value) -> Vec<(u64, String, String, String)> {
    report["directives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["issued_cycle"].as_u64().unwrap(),
                d["type"].as_str().unwrap().to_string(),
                d["target_domain"].as_str().unwrap().to_string(),
                d["knob"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_backtest_of_the_recorded_policies_reproduces_the_demo_and_a_change_shows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("run");
    let report = demo_report(&data, "seed", "48", &[]);
    let recorded = decided(&report);
    assert!(
        recorded.len() >= 3,
        "the demo decided too little: {recorded:?}"
    );
    let out = metaloop(&[
        "policy",
        "backtest",
        "--data",
        data.to_str().unwrap(),
        "--json",
        "--fail-on-difference",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["cycles"], 48);
    assert_eq!(r["first_difference"], serde_json::Value::Null, "{stdout}");
    assert_eq!(r["recorded"].as_u64().unwrap() as usize, recorded.len());
    assert_eq!(r["same"], r["recorded"]);
    assert_eq!(r["candidate"], r["recorded"]);

    // a candidate set without the threshold policy, and a bigger probe step
    let defaults = metaloop_core::policy::default_policies();
    let changed: Vec<_> = defaults
        .into_iter()
        .filter(|p| p.id != "improve_success_rate")
        .collect();
    #[derive(serde::Serialize)]
    struct Policies<T> {
        policies: T,
    }
    let file = dir.path().join("candidate.toml");
    std::fs::write(
        &file,
        toml::to_string(&Policies { policies: changed }).unwrap(),
    )
    .unwrap();
    let out = metaloop(&[
        "policy",
        "backtest",
        "--data",
        data.to_str().unwrap(),
        "--policies",
        file.to_str().unwrap(),
        "--fail-on-difference",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let first_threshold = recorded
        .iter()
        .find(|d| d.1 == "ADJUST_THRESHOLD")
        .expect("the seed demo raises a threshold");
    assert!(
        stdout.contains(&format!(
            "cycle {:>5}  recorded   ADJUST_THRESHOLD planner.confidence_threshold in {}",
            first_threshold.0, first_threshold.2
        )),
        "{stdout}"
    );
    assert!(stdout.contains("first difference at cycle"), "{stdout}");
}

#[test]
fn a_backtest_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = metaloop(&["policy", "backtest", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no ledger at"),
        "{}",
        text(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[policies]]\nid = 3\n").unwrap();
    let out = metaloop(&[
        "policy",
        "backtest",
        "--data",
        dir.path().to_str().unwrap(),
        "--policies",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.toml:2:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_custom_policy_example_passes_cel_custom_kpi_and_shadow() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies/custom.test.toml");
    let out = metaloop(&["policy", "test", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
}

#[test]
fn a_bad_expression_in_a_config_file_is_refused_at_its_place_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("metaloop.toml");
    std::fs::write(
        &cfg,
        r#"data_dir = "/tmp/x"

[[policies]]
id = "drift_watch"
name = "Drift in one domain"
condition.expression = "domains.exists(d, domains[d].drfit.overall_success_rate < -0.05)"
directive_template.type = "REQUEST_REVIEW"
directive_template.action = "review"
directive_template.target = { matching = "domains.filter(d, domains[d].drift.overall_success_rate < -0.05)" }
directive_template.knob = "review.drift"
directive_template.parameters = { value = "drift" }
directive_template.target_kpi = "overall_success_rate"
directive_template.impact_level = "MINIMAL"
"#,
    )
    .unwrap();
    let out = metaloop(&["config", "check", cfg.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // line 6: the expression starts at column 25, and its 28th character is the `.` of `.drfit`
    assert!(
        stderr.contains("metaloop.toml:6:53: policy drift_watch: condition expression: domain has no field drfit"),
        "{stderr}"
    );
}

#[test]
fn a_policy_whose_changes_keep_failing_is_recommended_for_review_not_changed() {
    let dir = tempfile::tempdir().unwrap();
    let report = demo_report(&dir.path().join("run"), "bad-directive", "60", &[]);
    let said: Vec<&str> = report["cycles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["summary"].as_str())
        .filter(|s| s.contains("Recommendation (not applied)"))
        .collect();
    assert!(
        said.iter().any(|s| s.contains(
            "directives of improve_success_rate failed verification and were rolled back"
        )),
        "{said:?}"
    );
}
