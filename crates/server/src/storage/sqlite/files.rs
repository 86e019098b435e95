//! Who may read the data directory: only the server's own user. The directory is created 0700
//! and the database file 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files
//! the database file's mode); a directory or file found with wider permissions is reported at
//! start (a warning each), not changed, since the operator may have chosen them.

use std::path::{Path, PathBuf};

/// Creates `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates the database file `path` empty with mode 0600 unless it exists.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The directory and files in `dir` (database, its `-wal`/`-shm`, the telemetry inbox's
/// journal files `-inbox-N-a`/`-b`, `master.key`) that other users may read or write, with
/// their modes.
pub fn too_open(dir: &Path, db: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let with = |suffix: &str| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        };
        let mut paths = vec![
            dir.to_owned(),
            db.to_owned(),
            with("-wal"),
            with("-shm"),
            crate::vault::path_in(dir),
        ];
        // The journal files, in name order (a listing's order is the file system's).
        let inbox_prefix = db
            .file_name()
            .map(|n| format!("{}-inbox-", n.to_string_lossy()));
        let mut journals: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                inbox_prefix
                    .as_deref()
                    .is_some_and(|p| e.file_name().to_string_lossy().starts_with(p))
            })
            .map(|e| e.path())
            .collect();
        journals.sort();
        paths.extend(journals);
        for p in paths {
            if let Ok(m) = std::fs::metadata(&p) {
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    out.push((p, mode));
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, db);
    out
}

/// Logs a warning for each of [`too_open`].
pub fn warn_if_open(dir: &Path, db: &Path) {
    for (p, mode) in too_open(dir, db) {
        tracing::warn!(
            path = %p.display(),
            mode = format!("{mode:o}"),
            "readable or writable by other users; `chmod go-rwx` it (docs/SECURITY.md)"
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::storage::{DeviceStore, NewDevice};
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn data_directory_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/tek-data");
        let db = super::super::Sqlite::open_dir(&dir).unwrap();
        db.add_devices(
            &[NewDevice {
                id: 1,
                name: "d".into(),
                key: tek_proto::crypto::Key([1; 16]),
            }],
            0,
        )
        .unwrap();
        assert_eq!(mode(&dir), 0o700);
        for f in [
            "tek.db",
            "tek.db-wal",
            "tek.db-shm",
            "tek.db-inbox-0-a",
            "tek.db-inbox-0-b",
            "master.key",
        ] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        assert!(too_open(&dir, &dir.join("tek.db")).is_empty());
        // Wider permissions set by someone else are found (and warned about at open).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.join("tek.db"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let open: Vec<PathBuf> = too_open(&dir, &dir.join("tek.db"))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(open, [dir.clone(), dir.join("tek.db")]);
        // The inbox's journal files too.
        std::fs::set_permissions(
            dir.join("tek.db-inbox-0-b"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let open: Vec<PathBuf> = too_open(&dir, &dir.join("tek.db"))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            open,
            [
                dir.clone(),
                dir.join("tek.db"),
                dir.join("tek.db-inbox-0-b")
            ]
        );
    }
}
