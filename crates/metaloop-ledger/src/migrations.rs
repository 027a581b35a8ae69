//! The schema migrations of both backends, embedded in the binary.
//!
//! Built the way `sqlx::migrate!` builds them — version and description from the file name,
//! the file's text, its SHA-384 checksum, `-- no-transaction` honoured — but at run time from
//! `include_str!`, so the build needs no procedural macro (and none of the host copies of the
//! database drivers it would compile). A database migrated by an earlier build sees the same
//! checksums.

use std::borrow::Cow;
use std::sync::LazyLock;

use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// (version, description, SQL) of each migration, in order.
type Files = &'static [(i64, &'static str, &'static str)];

const SQLITE: Files = &[
    (
        1,
        "records",
        include_str!("../migrations/sqlite/0001_records.sql"),
    ),
    (
        2,
        "checkpoints",
        include_str!("../migrations/sqlite/0002_checkpoints.sql"),
    ),
    (
        3,
        "note signatures",
        include_str!("../migrations/sqlite/0003_note_signatures.sql"),
    ),
];

const POSTGRES: Files = &[
    (
        1,
        "records",
        include_str!("../migrations/postgres/0001_records.sql"),
    ),
    (
        2,
        "checkpoints",
        include_str!("../migrations/postgres/0002_checkpoints.sql"),
    ),
    (
        3,
        "note signatures",
        include_str!("../migrations/postgres/0003_note_signatures.sql"),
    ),
    (
        4,
        "leadership",
        include_str!("../migrations/postgres/0004_leadership.sql"),
    ),
];

fn migrator(files: Files) -> Migrator {
    let migrations = files
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                SqlStr::from_static(sql),
                sql.starts_with("-- no-transaction"),
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// The SQLite ledger's migrations.
pub(crate) static SQLITE_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| migrator(SQLITE));

/// The PostgreSQL ledger's migrations.
pub(crate) static POSTGRES_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| migrator(POSTGRES));

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in the migrations folders is listed, under the version and description its
    /// name gives, and the checksums are the SHA-384 of the files as they are on disk (what
    /// `sqlx::migrate!` recorded in databases migrated by earlier builds).
    #[test]
    fn the_embedded_migrations_are_the_files() {
        use sha2::Digest;
        for (dir, files) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut names: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names.len(), files.len(), "{dir}: {names:?}");
            let m = migrator(files);
            for ((name, migration), (_, _, sql)) in names.iter().zip(m.iter()).zip(files) {
                let stem = name.trim_end_matches(".sql");
                let (version, description) = stem.split_once('_').unwrap();
                assert_eq!(migration.version, version.parse::<i64>().unwrap(), "{name}");
                assert_eq!(
                    migration.description,
                    description.replace('_', " "),
                    "{name}"
                );
                let on_disk = std::fs::read_to_string(path.join(name)).unwrap();
                assert_eq!(*sql, on_disk, "{name}");
                let sha = sha2::Sha384::digest(on_disk.as_bytes());
                assert_eq!(&migration.checksum[..], &sha[..], "{name}");
            }
        }
    }
}
