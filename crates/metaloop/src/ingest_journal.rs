//! The ingest journal: what the daemon has accepted, kept in its data directory so that a
//! restart neither loses an acknowledged event nor takes a copy of one again.
//!
//! One text file, `ingest.journal`, appended to between compactions, with two kinds of line:
//!
//! - `E <accepted_ms> <cycle> <event JSON>`: an accepted event, folded into the cycle that
//!   was open after `cycle` cycles had closed;
//! - `D <accepted_ms> <32 hex digits>`: a remembered (`source`, `id`) digest
//!   ([`metaloop_mesh::ingest::event_key`]) whose event is in a closed cycle.
//!
//! At start-up every line restores the dedupe window (those older than the window are
//! dropped), and the `E` lines of a cycle that had not closed are folded into the supervisor
//! again: their cycle's records were never written, so without them the events would be lost.
//! The file is then compacted: rewritten from memory as the window's `D` lines plus the open
//! cycle's `E` lines (into a temporary file, synced, renamed). It is compacted again at a
//! cycle's close once it holds more than twice the lines it needs.
//!
//! Durability: an HTTP ingest is answered only after [`IngestJournal::sync`]; mesh deliveries
//! are acknowledged at a cycle's close, after a sync, so an unsynced line is one the bus
//! delivers again.

use anyhow::{Context, Result, anyhow, bail};
use metaloop_core::protocol::SpineEvent;
use metaloop_core::time::Timestamp;
use metaloop_mesh::ingest::{DedupeWindow, event_key};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The journal file's name in the data directory.
pub const FILE_NAME: &str = "ingest.journal";

/// An open journal.
#[derive(Debug)]
pub struct IngestJournal {
    path: PathBuf,
    file: File,
    /// Lines in the file now.
    lines: u64,
    /// The `E` lines of cycles not yet closed: (accepted at, cycle, event JSON).
    open_events: Vec<(i64, u64, String)>,
    /// A write failed since the last sync: the next sync reports it.
    failed: Option<String>,
}

/// One decoded line.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// An accepted event.
    Event {
        at: Timestamp,
        cycle: u64,
        event: SpineEvent,
    },
    /// A remembered digest.
    Digest { at: Timestamp, key: u128 },
}

/// Decodes one line (without its newline); the error says what is wrong.
pub fn parse_line(line: &str) -> Result<Line, String> {
    let mut parts = line.splitn(2, ' ');
    let kind = parts.next().unwrap_or("");
    let rest = parts.next().ok_or("a line is a kind and fields")?;
    let (at, rest) = rest
        .split_once(' ')
        .ok_or("missing fields after the time")?;
    let at: i64 = at
        .parse()
        .map_err(|_| format!("time {at:?} is not an integer"))?;
    match kind {
        "E" => {
            let (cycle, json) = rest.split_once(' ').ok_or("missing the event")?;
            let cycle: u64 = cycle
                .parse()
                .map_err(|_| format!("cycle {cycle:?} is not an integer"))?;
            let event: SpineEvent =
                serde_json::from_str(json).map_err(|e| format!("event: {e}"))?;
            Ok(Line::Event {
                at: Timestamp(at),
                cycle,
                event,
            })
        }
        "D" => {
            if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("digest {rest:?} is not 32 hex digits"));
            }
            let key = u128::from_str_radix(rest, 16).map_err(|e| e.to_string())?;
            Ok(Line::Digest {
                at: Timestamp(at),
                key,
            })
        }
        other => Err(format!("unknown line kind {other:?}")),
    }
}

impl IngestJournal {
    /// Opens (or creates) the journal in `dir`: restores `window` as of `now` and returns the
    /// accepted events of cycles that had not closed (`cycle >= open_cycle`), to be folded in
    /// again. A torn last line (a crash mid-write) is dropped; any other bad line is an error
    /// naming it.
    pub fn open(
        dir: &Path,
        window: &mut DedupeWindow,
        open_cycle: u64,
        now: Timestamp,
    ) -> Result<(IngestJournal, Vec<SpineEvent>)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let mut remembered = Vec::new();
        let mut open_events = Vec::new();
        let mut replay = Vec::new();
        if path.exists() {
            let text =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let complete = match text.iter().rposition(|&b| b == b'\n') {
                Some(i) => &text[..=i],
                None => &text[..0],
            };
            if complete.len() < text.len() {
                tracing::warn!(
                    path = %path.display(),
                    bytes = text.len() - complete.len(),
                    "dropping a torn last line of the ingest journal"
                );
            }
            for (n, line) in BufReader::new(complete).lines().enumerate() {
                let line = line.with_context(|| format!("{}:{}", path.display(), n + 1))?;
                match parse_line(&line).map_err(|e| anyhow!("{}:{}: {e}", path.display(), n + 1))? {
                    Line::Digest { at, key } => remembered.push((key, at)),
                    Line::Event { at, cycle, event } => {
                        remembered.push((event_key(&event.source, &event.id), at));
                        if cycle >= open_cycle {
                            let json = serde_json::to_string(&event)?;
                            open_events.push((at.millis(), cycle, json));
                            replay.push(event);
                        }
                    }
                }
            }
        }
        window.restore(remembered, now);
        let mut journal = IngestJournal {
            file: append(&path)?,
            path,
            lines: 0,
            open_events,
            failed: None,
        };
        journal.compact(window)?;
        Ok((journal, replay))
    }

    /// Appends an accepted event (not yet durable: see [`Self::sync`]).
    pub fn record(&mut self, at: Timestamp, cycle: u64, event: &SpineEvent) {
        let json = match serde_json::to_string(event) {
            Ok(j) => j,
            Err(e) => {
                self.failed = Some(format!("encoding event {}: {e}", event.id));
                return;
            }
        };
        let line = format!("E {} {cycle} {json}\n", at.millis());
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            self.failed = Some(format!("writing {}: {e}", self.path.display()));
            return;
        }
        self.lines += 1;
        self.open_events.push((at.millis(), cycle, json));
    }

    /// Makes every line written so far durable; reports a write that failed since the last
    /// sync.
    /// Remembers a digest whose event is in a closed cycle (an ingest worker's event: the
    /// journal never held it).
    pub fn record_digest(&mut self, at: Timestamp, key: u128) {
        let line = format!("D {} {key:032x}\n", at.millis());
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            self.failed = Some(format!("writing {}: {e}", self.path.display()));
            return;
        }
        self.lines += 1;
    }

    pub fn sync(&mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            bail!("the ingest journal lost a write: {e}");
        }
        self.file
            .sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))
    }

    /// `closed` cycles have closed (their records are durable): their events are dropped from
    /// memory, and the file is compacted when it holds more than twice the lines it needs.
    pub fn cycle_closed(&mut self, closed: u64, window: &DedupeWindow) -> Result<()> {
        self.open_events.retain(|(_, cycle, _)| *cycle >= closed);
        let needed = (window.len() + self.open_events.len()) as u64;
        if self.lines > 2 * needed + 1024 {
            self.compact(window)?;
        }
        Ok(())
    }

    /// Lines in the file now.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Rewrites the file as the window's digests plus the open cycles' events.
    fn compact(&mut self, window: &DedupeWindow) -> Result<()> {
        let tmp = self.path.with_extension("journal.tmp");
        let mut out = std::io::BufWriter::new(
            File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        let mut lines = 0u64;
        for (key, at) in window.entries() {
            writeln!(out, "D {} {key:032x}", at.millis())?;
            lines += 1;
        }
        for (at, cycle, json) in &self.open_events {
            writeln!(out, "E {at} {cycle} {json}")?;
            lines += 1;
        }
        let file = out
            .into_inner()
            .map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.file = append(&self.path)?;
        self.lines = lines;
        Ok(())
    }
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metaloop_core::protocol::{EventData, KpiReport};
    use metaloop_mesh::ingest::DedupeConfig;

    fn event(id: &str) -> SpineEvent {
        SpineEvent {
            id: id.into(),
            source: "urn:spine:a".into(),
            time: Timestamp::from_secs(1000),
            data: EventData::KpiReported(KpiReport {
                domain: "application".into(),
                name: "queue_depth".into(),
                value: 3.0,
            }),
        }
    }

    #[test]
    fn a_digest_recorded_for_a_workers_event_is_remembered_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DedupeConfig {
            capacity: 100,
            window_secs: 3600,
        };
        let t = Timestamp::from_secs(1000);
        let key = event_key("urn:spine:a", "from-a-worker");
        {
            let mut w = DedupeWindow::new(cfg);
            let (mut j, _) = IngestJournal::open(dir.path(), &mut w, 0, t).unwrap();
            j.record_digest(t, key);
            j.sync().unwrap();
        }
        let mut w = DedupeWindow::new(cfg);
        let (_, replay) = IngestJournal::open(dir.path(), &mut w, 1, t.plus_millis(5)).unwrap();
        assert!(replay.is_empty());
        assert!(w.contains("urn:spine:a", "from-a-worker", t.plus_millis(5)));
        assert!(!w.contains("urn:spine:a", "another", t.plus_millis(5)));
    }

    #[test]
    fn a_reopened_journal_remembers_the_window_and_replays_the_open_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DedupeConfig {
            capacity: 100,
            window_secs: 3600,
        };
        let t = Timestamp::from_secs(1000);
        let mut w = DedupeWindow::new(cfg);
        let (mut j, replay) = IngestJournal::open(dir.path(), &mut w, 0, t).unwrap();
        assert!(replay.is_empty());
        for (i, cycle) in [(0, 0), (1, 0), (2, 1)] {
            let e = event(&format!("e{i}"));
            assert!(w.insert(&e.source, &e.id, t));
            j.record(t, cycle, &e);
        }
        j.sync().unwrap();
        j.cycle_closed(1, &w).unwrap();
        drop(j);
        // a restart after one closed cycle: all three remembered, only e2 folded in again
        let mut w2 = DedupeWindow::new(cfg);
        let later = t.plus_millis(60_000);
        let (j2, replay) = IngestJournal::open(dir.path(), &mut w2, 1, later).unwrap();
        assert_eq!(replay, vec![event("e2")]);
        for i in 0..3 {
            assert!(w2.contains("urn:spine:a", &format!("e{i}"), later));
        }
        assert_eq!(j2.lines(), 4, "three digests and the open event");
        drop(j2);
        // past the window nothing is remembered
        let mut w3 = DedupeWindow::new(cfg);
        let (_, replay) =
            IngestJournal::open(dir.path(), &mut w3, 2, t.plus_millis(3_600_000)).unwrap();
        assert!(replay.is_empty());
        assert!(w3.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_bad_line_named() {
        let dir = tempfile::tempdir().unwrap();
        let t = Timestamp::from_secs(1000);
        let path = dir.path().join(FILE_NAME);
        let good = format!(
            "E 1000000 0 {}\n",
            serde_json::to_string(&event("e1")).unwrap()
        );
        std::fs::write(&path, format!("{good}E 1000000 0 {{\"id\":")).unwrap();
        let mut w = DedupeWindow::new(DedupeConfig::default());
        let (_, replay) = IngestJournal::open(dir.path(), &mut w, 0, t).unwrap();
        assert_eq!(replay, vec![event("e1")]);
        std::fs::write(&path, format!("X 1 2\n{good}")).unwrap();
        let mut w = DedupeWindow::new(DedupeConfig::default());
        let err = IngestJournal::open(dir.path(), &mut w, 0, t).unwrap_err();
        assert!(err.to_string().contains(":1: unknown line kind"), "{err}");
    }

    #[test]
    fn lines_round_trip() {
        assert_eq!(
            parse_line("D 5 0000000000000000000000000000abcd"),
            Ok(Line::Digest {
                at: Timestamp(5),
                key: 0xabcd
            })
        );
        assert!(parse_line("D 5 abcd").is_err());
        assert!(parse_line("E x 0 {}").is_err());
        assert!(parse_line("").is_err());
    }
}
