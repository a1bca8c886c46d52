//! Names and directories: which path a record goes to, what is already there, and creating
//! directories and files with the store's modes.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::civil::UtcHour;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
const SUFFIX: &str = ".ndjson";

/// Refuses a site name that is not one plain directory name: empty, `.`/`..` or any other name
/// starting with a dot, or containing `/`, `\` or NUL.
pub(super) fn check_site(site: &str) -> io::Result<()> {
    let unsafe_name = site.is_empty() || site.starts_with('.') || site.contains(['/', '\\', '\0']);
    if unsafe_name {
        return Err(invalid_input(format!(
            "site {site:?} is not a safe directory name"
        )));
    }
    Ok(())
}

pub(super) fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `<HH>-<n>.ndjson`.
pub(super) fn file_name(hour: UtcHour, n: u64) -> String {
    format!("{:02}-{n}{SUFFIX}", hour.hour())
}

/// The `n` of a file name `<HH>-<n>.ndjson` for this hour, if `name` is one.
fn file_number(hour: UtcHour, name: &str) -> Option<u64> {
    let prefix = format!("{:02}-", hour.hour());
    let digits = name.strip_prefix(&prefix)?.strip_suffix(SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One past the highest file number of this hour in `day_dir`, 0 if there is none (or no directory).
pub(super) fn next_free_number(day_dir: &Path, hour: UtcHour) -> io::Result<u64> {
    let entries = match fs::read_dir(day_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut next = 0;
    for entry in entries {
        let entry = entry?;
        let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|name| file_number(hour, name))
        else {
            continue;
        };
        let after = n.checked_add(1).ok_or_else(|| {
            io::Error::other(format!("file numbers exhausted in {}", day_dir.display()))
        })?;
        next = next.max(after);
    }
    Ok(next)
}

/// Creates one directory with mode 0700; `Ok(false)` if something already has that name.
pub(super) fn create_dir(path: &Path) -> io::Result<bool> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `root` and any missing ancestors (mode 0700), syncing each parent, and syncs the parent
/// of `root` itself in case an earlier process created it without doing so.
pub(super) fn create_root(root: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = root
        .ancestors()
        .filter(|dir| !dir.as_os_str().is_empty())
        .take_while(|dir| !dir.exists())
        .collect();
    for dir in missing.iter().rev() {
        create_dir(dir)?;
        sync_dir(parent(dir))?;
    }
    if !fs::metadata(root)?.is_dir() {
        return Err(invalid_input(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    if root.parent().is_some() {
        sync_dir(parent(root))?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates a new file with mode 0600 for appending; fails if the name is taken.
pub(super) fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Makes a directory's entries durable.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names() {
        for good in ["shop", "shop-a.example", "a..b", "Ünïcode", "s p a c e"] {
            assert!(check_site(good).is_ok(), "{good:?}");
        }
        for bad in [
            "", ".", "..", ".hidden", "a/b", "/abs", "a\\b", "a\0b", "../up",
        ] {
            let err = check_site(bad).expect_err(bad);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn file_names_round_trip_and_others_are_ignored() {
        let seven = UtcHour::from_unix_ms(7 * 3_600_000);
        assert_eq!(file_name(seven, 0), "07-0.ndjson");
        assert_eq!(file_name(seven, 12), "07-12.ndjson");
        assert_eq!(file_number(seven, "07-0.ndjson"), Some(0));
        assert_eq!(file_number(seven, "07-12.ndjson"), Some(12));
        assert_eq!(file_number(seven, "07-007.ndjson"), Some(7));
        for other in [
            "08-1.ndjson",
            "7-1.ndjson",
            "07-.ndjson",
            "07-+1.ndjson",
            "07--1.ndjson",
            "07-1.ndjson.tmp",
            "07-1.json",
            "07-99999999999999999999.ndjson",
        ] {
            assert_eq!(file_number(seven, other), None, "{other}");
        }
    }
}
