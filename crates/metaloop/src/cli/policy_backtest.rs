//! `metaloop policy backtest --data DIR | --ledger URL [--policies FILE]`: replays a
//! recorded ledger's cycles through a candidate policy set and reports, cycle by cycle, what
//! it would have decided against what was decided (see `crate::backtest`).

use crate::backtest::{self, Report};
use crate::ledger_cmd::{LedgerCmdError, Target};
use crate::outln;
use anyhow::Context;
use std::path::PathBuf;

/// Arguments of `metaloop policy backtest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The data directory of a demo or daemon (its SQLite ledger).
    #[arg(long, conflicts_with = "ledger", required_unless_present = "ledger")]
    pub data: Option<PathBuf>,
    /// A ledger URL (`sqlite://…`, `postgres://…`).
    #[arg(long)]
    pub ledger: Option<String>,
    /// Candidate policies: a file of `[[policies]]`, or a metaloop.toml (default: the
    /// recorded policies, which reproduces the recording).
    #[arg(long, value_name = "FILE")]
    pub policies: Option<PathBuf>,
    /// A metaloop.toml for what the ledger does not record (verification and alert
    /// settings); default: the built-ins.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when the candidate decides anything differently.
    #[arg(long)]
    pub fail_on_difference: bool,
}

/// Runs the backtest; returns the exit code.
pub async fn exec(args: &Args) -> Result<i32, LedgerCmdError> {
    let target = match (&args.data, &args.ledger) {
        (Some(d), _) => Target::Data(d.clone()),
        (None, Some(u)) => Target::Url(u.clone()),
        (None, None) => return Err(LedgerCmdError::Usage("give --data or --ledger".into())),
    };
    let candidate = match &args.policies {
        Some(p) => Some(
            crate::policy_test::spec::load_policies(p)
                .map_err(|e| LedgerCmdError::Usage(e.to_string()))?,
        ),
        None => None,
    };
    let base = match &args.config {
        Some(c) => crate::config::FileConfig::load(c)
            .map_err(|e| LedgerCmdError::Usage(e.to_string()))?
            .supervisor(),
        None => metaloop_core::config::SupervisorConfig::default(),
    };
    let ledger = crate::ledger_cmd::open(&target).await?;
    let raw = ledger.read_all().await.context("reading the ledger")?;
    let records = backtest::decode(&raw).map_err(|e| LedgerCmdError::Usage(e.to_string()))?;
    let config = backtest::recorded_config(&records, &base)
        .map_err(|e| LedgerCmdError::Usage(e.to_string()))?;
    let bar = (!args.json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("replaying {pos}/{len} cycles {wide_bar}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let report = backtest::run(&records, &config, candidate.as_deref(), |done, total| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    })
    .map_err(|e| LedgerCmdError::Usage(e.to_string()))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        print_text(&report);
    }
    Ok(if args.fail_on_difference && !report.identical() {
        1
    } else {
        0
    })
}

fn print_text(r: &Report) {
    for c in &r.diff {
        for d in &c.same {
            outln!("cycle {:>5}  same       {}", c.cycle, d.line());
        }
        for d in &c.recorded_only {
            outln!("cycle {:>5}  recorded   {}", c.cycle, d.line());
        }
        for d in &c.candidate_only {
            let mark = if r.hypothetical.contains(&d.id) {
                " (hypothetical: the recording has no answer for it)"
            } else {
                ""
            };
            outln!("cycle {:>5}  candidate  {}{mark}", c.cycle, d.line());
        }
    }
    outln!(
        "{} cycles replayed: {} decisions recorded, {} by the candidate, {} the same",
        r.cycles,
        r.recorded,
        r.candidate,
        r.same
    );
    match r.first_difference {
        None => outln!("the candidate decides exactly what was recorded"),
        Some(c) => outln!("first difference at cycle {c}"),
    }
}
