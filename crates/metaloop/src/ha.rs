//! Replicas with one leader on a PostgreSQL ledger (docs/HA.md): the role a replica plays,
//! as the API, `/readyz` and `/metrics` show it, and the lease it holds while it leads.
//!
//! Leadership is one lease row in the ledger's database, timed by the database's clock,
//! with an epoch that only grows. Every ledger append checks the lease in its own
//! transaction (fencing), so a replica that lost it — paused past its TTL, cut off from the
//! database — can append nothing, and so publishes nothing (decide → log → act).

use serde::Serialize;
use std::sync::{Arc, RwLock};

/// What this replica is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Deciding, appending and publishing: it holds the lease, or runs alone.
    Leader,
    /// Tailing the ledger, ready to take over; refuses changes.
    Standby,
}

/// The leader as this replica last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderView {
    /// The lease's holder (this replica's own name when it leads or runs alone).
    pub holder: Option<String>,
    /// The lease's epoch (0 when the replica runs alone, without a lease).
    pub epoch: u64,
}

/// This replica's role, shared with the API; cheap to clone.
#[derive(Debug, Clone)]
pub struct RoleCell(Arc<RwLock<RoleInfo>>);

#[derive(Debug, Clone)]
struct RoleInfo {
    role: Role,
    me: String,
    leader: LeaderView,
    replicated: bool,
}

impl Default for RoleCell {
    /// A supervisor running alone: always the leader.
    fn default() -> Self {
        RoleCell::alone("this instance")
    }
}

impl RoleCell {
    /// A supervisor running alone (no lease): always the leader.
    pub fn alone(me: &str) -> Self {
        RoleCell(Arc::new(RwLock::new(RoleInfo {
            role: Role::Leader,
            me: me.to_string(),
            leader: LeaderView {
                holder: Some(me.to_string()),
                epoch: 0,
            },
            replicated: false,
        })))
    }

    /// A replica named `me`, starting as a standby.
    pub fn replica(me: &str) -> Self {
        RoleCell(Arc::new(RwLock::new(RoleInfo {
            role: Role::Standby,
            me: me.to_string(),
            leader: LeaderView {
                holder: None,
                epoch: 0,
            },
            replicated: true,
        })))
    }

    fn read(&self) -> RoleInfo {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.read().role
    }

    /// Whether this replica is a standby now.
    pub fn is_standby(&self) -> bool {
        self.role() == Role::Standby
    }

    /// This replica's name (the lease holder it writes).
    pub fn me(&self) -> String {
        self.read().me
    }

    /// Whether it is one of several replicas (a lease is in use).
    pub fn replicated(&self) -> bool {
        self.read().replicated
    }

    /// The leader as last seen.
    pub fn leader(&self) -> LeaderView {
        self.read().leader
    }

    /// This replica leads under `epoch`.
    pub fn lead(&self, epoch: u64) {
        let mut w = self.0.write().unwrap_or_else(|e| e.into_inner());
        w.role = Role::Leader;
        w.leader = LeaderView {
            holder: Some(w.me.clone()),
            epoch,
        };
    }

    /// This replica is a standby; `leader` is the lease as read from the database.
    pub fn follow(&self, leader: LeaderView) {
        let mut w = self.0.write().unwrap_or_else(|e| e.into_inner());
        w.role = Role::Standby;
        w.leader = leader;
    }

    /// The role as JSON: `{"role": …, "leader": {"holder": …, "epoch": N}}`.
    pub fn view(&self) -> serde_json::Value {
        let r = self.read();
        serde_json::json!({
            "role": r.role,
            "replica": r.me,
            "leader": r.leader,
        })
    }
}

/// A holder name for this start of a replica: the configured node (or host name and
/// listen address) plus a random suffix, so a restarted replica never passes for the one
/// that held the lease before it.
pub fn holder_name(node: Option<&str>, listen: &str) -> String {
    let base = match node {
        Some(n) => n.to_string(),
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "metaloop".into());
            format!("{host}:{listen}")
        }
    };
    let mut suffix = [0u8; 3];
    getrandom::fill(&mut suffix).expect("the operating system's random source failed");
    format!(
        "{base}#{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// A random delay of at most `max_ms` milliseconds.
pub fn jitter(max_ms: u64) -> std::time::Duration {
    if max_ms == 0 {
        return std::time::Duration::ZERO;
    }
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    std::time::Duration::from_millis(u64::from_le_bytes(b) % (max_ms + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_names_differ_per_start_and_keep_the_node() {
        let a = holder_name(Some("replica-a"), "127.0.0.1:7181");
        let b = holder_name(Some("replica-a"), "127.0.0.1:7181");
        assert!(a.starts_with("replica-a#") && b.starts_with("replica-a#"));
        assert_ne!(a, b);
        assert!(holder_name(None, "127.0.0.1:7181").contains(":127.0.0.1:7181#"));
    }

    #[test]
    fn the_role_view_names_the_leader() {
        let cell = RoleCell::replica("b#01");
        assert!(cell.is_standby());
        cell.follow(LeaderView {
            holder: Some("a#02".into()),
            epoch: 3,
        });
        assert_eq!(
            cell.view(),
            serde_json::json!({"role": "standby", "replica": "b#01", "leader": {"holder": "a#02", "epoch": 3}})
        );
        cell.lead(4);
        assert_eq!(cell.view()["role"], "leader");
        assert_eq!(cell.view()["leader"]["holder"], "b#01");
        assert_eq!(RoleCell::default().view()["leader"]["epoch"], 0);
    }
}
