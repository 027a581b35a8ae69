//! Reproducible uuid v7 ids: the time is the decision's time, the random bits a hash of the
//! seed and what the id names.

use crate::time::Timestamp;
use sha2::{Digest, Sha256};

/// A uuid v7 for `parts` at `time`, unique for distinct parts under one seed.
pub fn make_id(seed: u64, time: Timestamp, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"metaloop-id/v1");
    h.update(seed.to_be_bytes());
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(time.millis().max(0) as u64, &bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_reproducible_and_distinct() {
        let t = Timestamp::from_secs(1_767_225_900);
        let a = make_id(1, t, &["directive", "3", "application/x"]);
        assert_eq!(a, make_id(1, t, &["directive", "3", "application/x"]));
        assert_ne!(a, make_id(2, t, &["directive", "3", "application/x"]));
        assert_ne!(a, make_id(1, t, &["directive", "3", "application/y"]));
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
    }
}
