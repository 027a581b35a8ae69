//! The supervisor's Ed25519 signing key, kept in a one-line text file in the data directory.
//!
//! Secret key file: `metaloop-ed25519-secret-v1 <64 hex digits of the 32-byte seed>` and a
//! newline, owner-only (mode 0600). Public key file: `metaloop-ed25519-public-v1 <64 hex
//! digits>` and a newline. `docs/LEDGER.md` ("Keys") describes both.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::hex;

/// The first word of a secret key file.
pub const SECRET_KEY_TAG: &str = "metaloop-ed25519-secret-v1";

/// The first word of a public key file.
pub const PUBLIC_KEY_TAG: &str = "metaloop-ed25519-public-v1";

/// Key files are one short line; anything much longer is not a key file.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// Why a key could not be loaded, generated or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("reading key file {}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file could not be written.
    #[error("writing key file {}", path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A secret key file that group or others may read: refused, it may have leaked.
    #[error(
        "secret key file {} is accessible by group or others (mode {mode:04o}); \
         it must be readable by its owner only: run `chmod 600 {}` \
         (and consider the key compromised if others could read it)",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not in the expected format.
    #[error("key file {} is not a metaloop key file: {reason}", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong (never the file's contents).
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("generating a signing key: the operating system's random source failed")]
    Random(#[source] getrandom::Error),
}

/// Loads the signing key at `path`, or generates one there from the OS random source if no
/// file exists yet.
///
/// A new file is created owner-only (0600) from the start, never world-readable even
/// briefly, and is complete before it appears under its name (it is written to a temporary
/// file in the same directory, synced, then linked into place; a concurrent start that
/// generated first wins and its key is used). Missing parent directories are created with
/// mode 0700. An existing file that group or others may access is refused
/// ([`KeyError::TooOpen`]).
pub fn load_or_generate(path: impl AsRef<Path>) -> Result<SigningKey, KeyError> {
    let path = path.as_ref();
    match load_secret_key(path) {
        Err(KeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(KeyError::Random)?;
    let key = SigningKey::from_bytes(&seed);
    let line = Zeroizing::new(format!("{SECRET_KEY_TAG} {}\n", hex::encode(seed.as_ref())));
    match write_new(path, line.as_bytes(), 0o600) {
        Ok(()) => Ok(key),
        // Another process generated the key between our look and our write: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_secret_key(path),
        Err(source) => Err(KeyError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Loads the signing key at `path`, refusing a file that group or others may access.
pub fn load_secret_key(path: impl AsRef<Path>) -> Result<SigningKey, KeyError> {
    let path = path.as_ref();
    let read_error = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    // The permissions of the file actually opened, checked before reading a byte of it.
    let metadata = file.metadata().map_err(read_error)?;
    check_owner_only(path, &metadata)?;
    let text = Zeroizing::new(read_limited(file, path)?);
    let seed = Zeroizing::new(parse_line(path, &text, SECRET_KEY_TAG)?);
    Ok(SigningKey::from_bytes(&seed))
}

/// Loads a public key file written by [`write_public_key`].
pub fn load_public_key(path: impl AsRef<Path>) -> Result<VerifyingKey, KeyError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = read_limited(file, path)?;
    let bytes = parse_line(path, &text, PUBLIC_KEY_TAG)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        reason: "the 32 bytes are not an Ed25519 public key".into(),
    })
}

/// Writes `key` to `path` as a public key file (mode 0644), replacing any file there.
pub fn write_public_key(path: impl AsRef<Path>, key: &VerifyingKey) -> Result<(), KeyError> {
    let path = path.as_ref();
    let line = format!("{PUBLIC_KEY_TAG} {}\n", hex::encode(key.as_bytes()));
    replace(path, line.as_bytes(), 0o644).map_err(|source| KeyError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The public key as the one line of a public key file, without the newline (for configs
/// and messages).
pub fn public_key_line(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_TAG} {}", hex::encode(key.as_bytes()))
}

fn read_limited(file: File, path: &Path) -> Result<String, KeyError> {
    let mut text = String::new();
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|source| match source.kind() {
            io::ErrorKind::InvalidData => KeyError::Malformed {
                path: path.to_owned(),
                reason: "it is not UTF-8 text".into(),
            },
            _ => KeyError::Read {
                path: path.to_owned(),
                source,
            },
        })?;
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(KeyError::Malformed {
            path: path.to_owned(),
            reason: format!("it is longer than {MAX_KEY_FILE_LEN} bytes"),
        });
    }
    Ok(text)
}

/// Parses `TAG <64 hex digits>` with an optional final newline.
fn parse_line(path: &Path, text: &str, tag: &str) -> Result<[u8; 32], KeyError> {
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let line = text.strip_suffix('\n').unwrap_or(text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let Some((found_tag, digits)) = line.split_once(' ') else {
        return Err(malformed(format!(
            "expected one line `{tag} <64 hex digits>`"
        )));
    };
    if found_tag != tag {
        let other = if tag == SECRET_KEY_TAG {
            PUBLIC_KEY_TAG
        } else {
            SECRET_KEY_TAG
        };
        return Err(malformed(if found_tag == other {
            format!("it holds a {other} key, a {tag} key is needed here")
        } else {
            format!("expected one line `{tag} <64 hex digits>`")
        }));
    }
    hex::decode_hash(digits)
        .ok_or_else(|| malformed(format!("after `{tag} ` expected 64 hex digits")))
}

#[cfg(unix)]
fn check_owner_only(path: &Path, metadata: &fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path, _metadata: &fs::Metadata) -> Result<(), KeyError> {
    // Permission bits are a Unix notion; elsewhere the data directory's ACLs protect the key.
    Ok(())
}

#[cfg(unix)]
fn open_new(path: &Path, mode: u32) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _mode: u32) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn create_parent(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_parent(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Writes `bytes` to a fresh temporary file next to `path` (created with `mode`) and syncs it.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_parent(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(io::Error::other)?;
    let mut temp_name = name.to_owned();
    temp_name.push(format!(".tmp-{}", hex::encode(&suffix)));
    let temp = dir.join(temp_name);
    let written = open_new(&temp, mode).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Creates `path` with `bytes`, failing with `AlreadyExists` if it exists; the file appears
/// complete under its name or not at all.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temp = write_temp(path, bytes, mode)?;
    // A hard link, unlike a rename, never replaces an existing file.
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    linked?;
    sync_parent(path)
}

/// Replaces `path` with `bytes` atomically.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temp = write_temp(path, bytes, mode)?;
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_parent(path)
}

/// Makes the new directory entry durable (a key that signed checkpoints must survive a crash).
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_line_names_what_is_wrong() {
        let p = Path::new("k");
        let digits = "ab".repeat(32);
        assert_eq!(
            parse_line(p, &format!("{SECRET_KEY_TAG} {digits}\n"), SECRET_KEY_TAG).unwrap(),
            [0xab; 32]
        );
        assert_eq!(
            parse_line(p, &format!("{SECRET_KEY_TAG} {digits}"), SECRET_KEY_TAG).unwrap(),
            [0xab; 32]
        );
        let err = parse_line(p, &format!("{PUBLIC_KEY_TAG} {digits}\n"), SECRET_KEY_TAG);
        assert_eq!(
            err.unwrap_err().to_string(),
            "key file k is not a metaloop key file: it holds a metaloop-ed25519-public-v1 key, \
             a metaloop-ed25519-secret-v1 key is needed here"
        );
        let err = parse_line(
            p,
            &format!("{SECRET_KEY_TAG} {}\n", &digits[1..]),
            SECRET_KEY_TAG,
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "key file k is not a metaloop key file: after `metaloop-ed25519-secret-v1 ` \
             expected 64 hex digits"
        );
        assert!(parse_line(p, "", SECRET_KEY_TAG).is_err());
        assert!(parse_line(p, &format!("{SECRET_KEY_TAG} {digits}\n\n"), SECRET_KEY_TAG).is_err());
    }
}
