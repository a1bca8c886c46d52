//! [`FileStore`]: routes each record to its open file, rotates, creates, and syncs.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::civil::UtcHour;
use super::encode::check_batch;
use super::layout;
use super::open_file::OpenFile;
use super::{FileStoreConfig, Record, WriteStats, MAX_OPEN_FILES};

/// How many (site, hour) keys the store remembers the next file number of. Past this the memory is
/// cleared; a key used again is rescanned from its directory, which is always right, only slower.
const MAX_REMEMBERED_HOURS: usize = 4096;

/// How many taken names in a row `create_new` may meet before giving up (only another writer in
/// the same directory could cause even one).
const MAX_CREATE_ATTEMPTS: u32 = 16;

/// The `file` sink's store. See the [module docs](super) for what it guarantees.
pub struct FileStore {
    root: PathBuf,
    max_file_bytes: u64,
    /// At most [`MAX_OPEN_FILES`], none finished.
    open: Vec<OpenFile>,
    /// Next free file number per (site, hour) used by this process; at most [`MAX_REMEMBERED_HOURS`].
    next_number: HashMap<(String, UtcHour), u64>,
    /// Directories whose entries changed (or may not be durable yet) and still need a sync.
    unsynced_dirs: BTreeSet<PathBuf>,
    /// Use counter for least-recently-used closing.
    tick: u64,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.root)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("open_files", &self.open.len())
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Creates root (mode 0700 dirs, via std::os::unix::fs::DirBuilderExt) if missing.
    /// Refuses `max_file_bytes == 0` with [`io::ErrorKind::InvalidInput`].
    pub fn open(cfg: FileStoreConfig) -> io::Result<FileStore> {
        if cfg.max_file_bytes == 0 {
            return Err(layout::invalid_input(
                "max_file_bytes must be at least 1".to_owned(),
            ));
        }
        layout::create_root(&cfg.root)?;
        Ok(FileStore {
            root: cfg.root,
            max_file_bytes: cfg.max_file_bytes,
            open: Vec::new(),
            next_number: HashMap::new(),
            unsynced_dirs: BTreeSet::new(),
            tick: 0,
        })
    }

    /// Appends each record's payload + `\n` to `root/<site>/<YYYY-MM-DD>/<HH>-<n>.ndjson` (UTC date/hour
    /// of received_ms), then fsyncs every file written in this call and every directory whose entries
    /// changed (new dirs/files: fsync the parent dir), and only then returns Ok. After Ok the lines
    /// are durable.
    ///
    /// The whole batch is checked first: an unsafe site name or a payload containing `\n` is refused
    /// with [`io::ErrorKind::InvalidInput`] before anything is written. On any other error, every file
    /// this call wrote to is finished, so a retry of the batch starts fresh files.
    pub fn write_batch(&mut self, records: &[Record<'_>]) -> io::Result<WriteStats> {
        check_batch(records)?;
        let call_start = self.tick;
        let mut stats = WriteStats::default();
        if let Err(e) = self.write_and_sync(records, &mut stats) {
            // Dropping discards their buffers and closes them: finished, possibly mid-line.
            self.open.retain(|f| f.last_used <= call_start);
            return Err(e);
        }
        Ok(stats)
    }

    /// Closes (fsyncs) open files.
    pub fn close(mut self) -> io::Result<()> {
        let mut first_err = None;
        for file in self.open.drain(..) {
            if let Err(e) = file.finish() {
                first_err.get_or_insert(e);
            }
        }
        for dir in &self.unsynced_dirs {
            if let Err(e) = layout::sync_dir(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn write_and_sync(&mut self, records: &[Record<'_>], stats: &mut WriteStats) -> io::Result<()> {
        for record in records {
            self.write_record(record, stats)?;
        }
        for file in &mut self.open {
            file.sync()?;
        }
        for dir in &self.unsynced_dirs {
            layout::sync_dir(dir)?;
        }
        self.unsynced_dirs.clear();
        Ok(())
    }

    fn write_record(&mut self, record: &Record<'_>, stats: &mut WriteStats) -> io::Result<()> {
        let hour = UtcHour::from_unix_ms(record.received_ms);
        let line_len = record.payload.len() as u64 + 1;
        let idx = match self.open.iter().position(|f| f.is(record.site, hour)) {
            Some(i) if self.open[i].fits(line_len, self.max_file_bytes) => i,
            Some(i) => {
                self.finish(i, stats)?;
                self.start_file(record.site, hour, stats)?
            }
            None => self.start_file(record.site, hour, stats)?,
        };
        self.tick += 1;
        let file = &mut self.open[idx];
        file.last_used = self.tick;
        file.append(record.payload)?;
        stats.records += 1;
        stats.bytes += line_len;
        Ok(())
    }

    /// Opens the next file for (site, hour) and returns its index in `open`. Finishes first the
    /// site's files of earlier hours (the site's hour changed) and, at the bound, the least
    /// recently used file. A late record for an earlier hour thus gets a file of its own that
    /// stays open until the site next moves on to a new file.
    fn start_file(
        &mut self,
        site: &str,
        hour: UtcHour,
        stats: &mut WriteStats,
    ) -> io::Result<usize> {
        while let Some(i) = self
            .open
            .iter()
            .position(|f| f.site == site && f.hour < hour)
        {
            self.finish(i, stats)?;
        }
        if self.open.len() >= MAX_OPEN_FILES {
            let lru = (0..self.open.len()).min_by_key(|&i| self.open[i].last_used);
            if let Some(i) = lru {
                self.finish(i, stats)?;
            }
        }
        let day_dir = self.ensure_dirs(site, hour)?;
        let file = self.create_next(site, hour, &day_dir)?;
        self.tick += 1;
        self.open.push(OpenFile::new(site, hour, file, self.tick));
        Ok(self.open.len() - 1)
    }

    fn finish(&mut self, idx: usize, stats: &mut WriteStats) -> io::Result<()> {
        stats.files_finished += 1;
        self.open.swap_remove(idx).finish()
    }

    /// Creates `<root>/<site>/<day>` as needed, noting the parents that changed.
    fn ensure_dirs(&mut self, site: &str, hour: UtcHour) -> io::Result<PathBuf> {
        let site_dir = self.root.join(site);
        let day_dir = site_dir.join(hour.day_name());
        if layout::create_dir(&site_dir)? {
            self.unsynced_dirs.insert(self.root.clone());
        }
        if layout::create_dir(&day_dir)? {
            self.unsynced_dirs.insert(site_dir);
        }
        Ok(day_dir)
    }

    /// Creates the next numbered file of (site, hour) in `day_dir`, scanning the directory the
    /// first time this process needs the key.
    fn create_next(&mut self, site: &str, hour: UtcHour, day_dir: &Path) -> io::Result<File> {
        let key = (site.to_owned(), hour);
        let mut n = match self.next_number.get(&key) {
            Some(&n) => n,
            None => {
                // An earlier process may have created these and stopped before syncing them.
                self.unsynced_dirs.insert(self.root.clone());
                self.unsynced_dirs.insert(self.root.join(site));
                layout::next_free_number(day_dir, hour)?
            }
        };
        for _ in 0..MAX_CREATE_ATTEMPTS {
            match layout::create_file(&day_dir.join(layout::file_name(hour, n))) {
                Ok(file) => {
                    self.unsynced_dirs.insert(day_dir.to_owned());
                    self.remember(key, n.saturating_add(1));
                    return Ok(file);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n = n.saturating_add(1),
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{MAX_CREATE_ATTEMPTS} file names in a row taken in {}",
                day_dir.display()
            ),
        ))
    }

    fn remember(&mut self, key: (String, UtcHour), next: u64) {
        if self.next_number.len() >= MAX_REMEMBERED_HOURS && !self.next_number.contains_key(&key) {
            self.next_number.clear();
        }
        self.next_number.insert(key, next);
    }
}
