//! The job store's schema, one migration per file under `migrations/<database>/`, embedded in
//! the binary.
//!
//! Listed here rather than found by `sqlx::migrate!` so that the build does not compile sqlx's
//! macros: they build sqlx's drivers and SQLite's C source a second time, for the compiler.
//! Versions, descriptions and checksums are the ones `migrate!` gives (the checksum is the
//! SQL's SHA-384 either way), so a store it created carries on.

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(version, description, file name)` for each migration, as `migrate!` would name it.
macro_rules! embedded {
    ($dir:literal: $(($version:literal, $description:literal, $file:literal)),* $(,)?) => {
        vec![$(Migration::new(
            $version,
            $description.into(),
            MigrationType::Simple,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $dir, "/", $file)).into_sql_str(),
            false,
        )),*]
    };
}

/// The files of both databases: a migration is always written for both.
macro_rules! all_migrations {
    ($dir:literal) => {
        embedded!($dir:
            (1, "jobs", "0001_jobs.sql"),
            (2, "credentials", "0002_credentials.sql"),
            (3, "server key", "0003_server_key.sql"),
            (4, "used signatures", "0004_used_signatures.sql"),
            (5, "crashes and turns", "0005_crashes_and_turns.sql"),
            (6, "manifests", "0006_manifests.sql"),
            (7, "registered queries", "0007_registered_queries.sql"),
            (8, "destination type", "0008_destination_type.sql"),
            (9, "slice length", "0009_slice_length.sql"),
            (10, "emails due", "0010_emails_due.sql"),
        )
    };
}

pub fn sqlite() -> Migrator {
    Migrator::with_migrations(all_migrations!("sqlite"))
}

pub fn postgres() -> Migrator {
    Migrator::with_migrations(all_migrations!("postgres"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in the folders is listed, under the version and description its name gives
    /// (`0005_crashes_and_turns.sql` → 5, "crashes and turns"), as `migrate!` read them.
    #[test]
    fn every_migration_file_is_embedded_as_migrate_named_it() {
        for (dir, migrator) in [("sqlite", sqlite()), ("postgres", postgres())] {
            let mut files: Vec<String> =
                std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
            files.sort();
            let named: Vec<(i64, String)> = files
                .iter()
                .map(|f| {
                    let (version, rest) = f.strip_suffix(".sql").unwrap().split_once('_').unwrap();
                    (version.parse().unwrap(), rest.replace('_', " "))
                })
                .collect();
            let embedded: Vec<(i64, String)> =
                migrator.iter().map(|m| (m.version, m.description.to_string())).collect();
            assert_eq!(embedded, named, "migrations/{dir}");
            for (m, f) in migrator.iter().zip(&files) {
                let text =
                    std::fs::read_to_string(format!("{}/migrations/{dir}/{f}", env!("CARGO_MANIFEST_DIR")))
                        .unwrap();
                assert_eq!(m.sql.as_str(), text, "{f}");
                assert!(!text.starts_with("-- no-transaction"), "{f}: runs in a transaction here");
            }
        }
    }
}
