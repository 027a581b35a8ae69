//! The signing key file: generated owner-only, loaded back, refused when others can read it.

#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use metaloop_ledger::keys::{
    PUBLIC_KEY_TAG, SECRET_KEY_TAG, load_or_generate, load_public_key, load_secret_key,
    public_key_line, write_public_key,
};
use metaloop_ledger::{Checkpoint, KeyError};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_generated_key_is_owner_only_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("supervisor.key");
    let key = load_or_generate(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let text = fs::read_to_string(&path).unwrap();
    let (tag, digits) = text.trim_end().split_once(' ').unwrap();
    assert_eq!(tag, SECRET_KEY_TAG);
    assert_eq!(digits.len(), 64);
    assert!(text.ends_with('\n') && text.lines().count() == 1);
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    // The same key on the next start.
    let again = load_or_generate(&path).unwrap();
    assert_eq!(again.to_bytes(), key.to_bytes());
    assert_eq!(load_secret_key(&path).unwrap().to_bytes(), key.to_bytes());
    // Two generated keys differ (the OS random source is used).
    let other = load_or_generate(dir.path().join("other.key")).unwrap();
    assert_ne!(other.to_bytes(), key.to_bytes());
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supervisor.key");
    load_or_generate(&path).unwrap();
    for open in [0o644, 0o640, 0o604, 0o660] {
        fs::set_permissions(&path, fs::Permissions::from_mode(open)).unwrap();
        let err = load_or_generate(&path).unwrap_err();
        assert!(matches!(err, KeyError::TooOpen { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "secret key file {p} is accessible by group or others (mode {open:04o}); it \
                 must be readable by its owner only: run `chmod 600 {p}` (and consider the key \
                 compromised if others could read it)",
                p = path.display()
            )
        );
        assert!(matches!(
            load_secret_key(&path),
            Err(KeyError::TooOpen { .. })
        ));
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    load_or_generate(&path).unwrap();
}

#[test]
fn a_file_that_is_not_a_secret_key_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supervisor.key");
    let secret = "00".repeat(31) + "zz";
    fs::write(&path, format!("{SECRET_KEY_TAG} {secret}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let err = load_or_generate(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "key file {} is not a metaloop key file: after `{SECRET_KEY_TAG} ` expected 64 hex \
             digits",
            path.display()
        )
    );
    assert!(!format!("{err:?}").contains(&secret));
    // Nothing was overwritten.
    assert!(fs::read_to_string(&path).unwrap().contains(&secret));
}

#[test]
fn public_keys_round_trip_and_verify_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_generate(dir.path().join("supervisor.key")).unwrap();
    let public_path = dir.path().join("supervisor.pub");
    write_public_key(&public_path, &key.verifying_key()).unwrap();
    assert_eq!(mode(&public_path), 0o644);
    let text = fs::read_to_string(&public_path).unwrap();
    assert_eq!(text, public_key_line(&key.verifying_key()) + "\n");
    assert!(text.starts_with(PUBLIC_KEY_TAG));
    let public = load_public_key(&public_path).unwrap();
    assert_eq!(public, key.verifying_key());
    let checkpoint = Checkpoint::sign(&key, 1, 0, [1; 32], [2; 32]);
    assert!(checkpoint.verify_signature(&public));
    // Rewriting replaces the file.
    let other = load_or_generate(dir.path().join("other.key")).unwrap();
    write_public_key(&public_path, &other.verifying_key()).unwrap();
    assert_eq!(
        load_public_key(&public_path).unwrap(),
        other.verifying_key()
    );
    // A secret key file is not a public key file, and vice versa.
    let err = load_public_key(dir.path().join("supervisor.key")).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("it holds a metaloop-ed25519-secret-v1 key, a metaloop-ed25519-public-v1 key is needed here"),
        "{err}"
    );
    fs::set_permissions(&public_path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        load_secret_key(&public_path),
        Err(KeyError::Malformed { .. })
    ));
    let missing = load_public_key(dir.path().join("nowhere.pub")).unwrap_err();
    assert!(matches!(missing, KeyError::Read { .. }));
}
