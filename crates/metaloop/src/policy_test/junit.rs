//! JUnit XML for policy test results, in the shape CI systems read (Jenkins' and GitLab's
//! `testsuites` / `testsuite` / `testcase` / `failure`).

use super::TestResult;

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // characters XML 1.0 cannot carry at all
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// One suite per test file: its name and results, or the error that stopped it loading.
pub struct Suite<'a> {
    pub name: String,
    pub results: &'a [TestResult],
    pub error: Option<String>,
}

/// The whole report.
pub fn render(suites: &[Suite<'_>]) -> String {
    let tests: usize = suites.iter().map(|s| s.results.len().max(1)).sum();
    let failures: usize = suites
        .iter()
        .map(|s| s.results.iter().filter(|r| !r.passed()).count())
        .sum();
    let errors = suites.iter().filter(|s| s.error.is_some()).count();
    let time: f64 = suites
        .iter()
        .flat_map(|s| s.results.iter())
        .map(|r| r.seconds)
        .sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"metaloop policy test\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">\n"
    ));
    for s in suites {
        let name = escape(&s.name);
        let f = s.results.iter().filter(|r| !r.passed()).count();
        let t: f64 = s.results.iter().map(|r| r.seconds).sum();
        if let Some(err) = &s.error {
            x.push_str(&format!(
                "  <testsuite name=\"{name}\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0.000\">\n    <testcase name=\"load\" classname=\"{name}\" time=\"0.000\">\n      <error message=\"{}\" type=\"load\">{}</error>\n    </testcase>\n  </testsuite>\n",
                escape(err),
                escape(err)
            ));
            continue;
        }
        x.push_str(&format!(
            "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" skipped=\"0\" time=\"{t:.3}\">\n",
            s.results.len()
        ));
        for r in s.results {
            x.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{name}\" time=\"{:.3}\"",
                escape(&r.name),
                r.seconds
            ));
            if r.passed() {
                x.push_str("/>\n");
            } else {
                let text = r.failures.join("\n");
                x.push_str(&format!(
                    ">\n      <failure message=\"{}\" type=\"expectation\">{}</failure>\n    </testcase>\n",
                    escape(&format!("{} expectation(s) not met", r.failures.len())),
                    escape(&text)
                ));
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(escape("x\u{1}y\nz"), "x\u{FFFD}y\nz");
    }

    #[test]
    fn counts_failures_per_suite() {
        let results = vec![
            TestResult {
                name: "ok".into(),
                failures: vec![],
                issued: vec![],
                held_back: vec![],
                seconds: 0.5,
            },
            TestResult {
                name: "bad <one>".into(),
                failures: vec!["cycle 3: directives differ".into()],
                issued: vec![],
                held_back: vec![],
                seconds: 0.25,
            },
        ];
        let xml = render(&[Suite {
            name: "p.test.toml".into(),
            results: &results,
            error: None,
        }]);
        assert!(
            xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert!(xml.contains("<testcase name=\"bad &lt;one&gt;\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"1 expectation(s) not met\""),
            "{xml}"
        );
    }
}
