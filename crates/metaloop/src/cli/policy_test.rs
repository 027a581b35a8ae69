//! `metaloop policy test FILE…`: runs policy test files (see `crate::policy_test`); exit 0
//! when every test passes, 1 when one fails (with a diff of what was expected and what
//! happened), 2 when a file cannot be loaded.

use crate::outln;
use crate::policy_test::{self, PolicyCoverage, TestResult, junit, spec};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `metaloop policy test`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Test files (TOML; see docs/POLICIES.md).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Print which policies' conditions held and fired, across all tests.
    #[arg(long)]
    pub coverage: bool,
    /// Print every directive each test issued.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Runs the tests; returns the exit code.
pub fn exec(args: &Args) -> i32 {
    let mut loaded: Vec<(String, Result<spec::LoadedFile, String>)> = Vec::new();
    for f in &args.files {
        loaded.push((
            f.display().to_string(),
            spec::load(f).map_err(|e| e.to_string()),
        ));
    }
    let mut coverage: BTreeMap<String, PolicyCoverage> = BTreeMap::new();
    let mut all: Vec<(String, Vec<TestResult>, Option<String>)> = Vec::new();
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    for (name, file) in &loaded {
        outln!("{name}");
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                outln!("  ERROR {e}");
                broken += 1;
                all.push((name.clone(), vec![], Some(e.clone())));
                continue;
            }
        };
        for p in &file.config.policies {
            coverage.entry(p.id.clone()).or_default();
        }
        let mut results = Vec::new();
        let mut error = None;
        for t in &file.tests {
            match policy_test::run_test(file, t, &mut coverage) {
                Ok(r) => {
                    if r.passed() {
                        passed += 1;
                        outln!("  PASS  {} ({:.2} s)", r.name, r.seconds);
                    } else {
                        failed += 1;
                        outln!("  FAIL  {} ({:.2} s)", r.name, r.seconds);
                        for f in &r.failures {
                            outln!("        {}", f.replace('\n', "\n        "));
                        }
                    }
                    if args.verbose {
                        for d in &r.issued {
                            outln!(
                                "        cycle {:>4}: {} {} in {} ({}, {}){}",
                                d.cycle,
                                d.directive_type,
                                d.knob,
                                d.domain,
                                d.impact,
                                d.status,
                                d.verdict
                                    .as_ref()
                                    .map(|(o, c)| format!(" → {o} in cycle {c}"))
                                    .unwrap_or_default()
                            );
                        }
                        for (c, p, why) in &r.held_back {
                            outln!("        cycle {c:>4}: {p} held but did not fire: {why}");
                        }
                    }
                    results.push(r);
                }
                Err(e) => {
                    broken += 1;
                    outln!("  ERROR {}: {e}", t.name);
                    error = Some(format!("test {:?}: {e}", t.name));
                }
            }
        }
        all.push((name.clone(), results, error));
    }
    outln!(
        "{} test(s): {passed} passed, {failed} failed{}",
        passed + failed,
        if broken > 0 {
            format!(", {broken} could not run")
        } else {
            String::new()
        }
    );
    if args.coverage {
        outln!("coverage:");
        let width = coverage.keys().map(String::len).max().unwrap_or(0);
        for (id, c) in &coverage {
            let fired = if c.directives == 0 {
                "never fired".to_string()
            } else {
                format!(
                    "fired {} directive(s) in {} test(s)",
                    c.directives,
                    c.tests_fired.len()
                )
            };
            outln!(
                "  {id:<width$}  {fired}; condition held in {} of {} evaluations",
                c.held,
                c.evaluated
            );
        }
    }
    if let Some(path) = &args.junit {
        let suites: Vec<junit::Suite<'_>> = all
            .iter()
            .map(|(name, results, error)| junit::Suite {
                name: name.clone(),
                results,
                error: error.clone(),
            })
            .collect();
        if let Err(e) = std::fs::write(path, junit::render(&suites)) {
            eprintln!("error: writing {}: {e}", path.display());
            return 2;
        }
    }
    if broken > 0 {
        2
    } else if failed > 0 {
        1
    } else {
        0
    }
}
