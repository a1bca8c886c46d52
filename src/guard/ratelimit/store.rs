//! The keyed state behind one limiter, as a governor [`StateStore`]: governor's own `DashMap` of GCRA cells,
//! plus what governor does not do — a hard cap on the number of keys with one shared overflow cell, and a
//! time base that outlives the limiter, so a reload can build a limiter with a new quota over the same cells.
//!
//! Time base: governor measures a cell's theoretical arrival time (TAT) in nanoseconds since the limiter was
//! built. A [`Table`] stores it in nanoseconds since the service's origin instead, and each limiter's
//! [`Store`] carries its `shift` (origin → limiter start) to translate on the way in and out.

use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};

/// The cells of one limiter. Owned by the service, shared by every generation of that limiter.
pub(super) struct Table<K> {
    cells: DashMapStateStore<K>,
    /// Keys in `cells` plus inserts in flight; a slot is reserved before a key is inserted, so `cells` never
    /// holds more keys than the cap it was reserved under.
    len: AtomicUsize,
    /// Shared by every key that arrives while `cells` is full.
    overflow: InMemoryState,
}

impl<K: Hash + Eq + Clone> Table<K> {
    pub(super) fn new() -> Self {
        Table {
            cells: DashMapStateStore::default(),
            len: AtomicUsize::new(0),
            overflow: InMemoryState::default(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn reserve(&self, max_keys: usize) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    /// Drops every key whose TAT is at or before `origin + at`: such a cell is indistinguishable from a new one.
    fn retain_after(&self, at: u64) {
        self.cells.retain(|_, cell| {
            let keep = tat(cell) > at;
            if !keep {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
            keep
        });
    }

    /// Drops every key (the limiter was switched off).
    pub(super) fn clear(&self) {
        self.retain_after(u64::MAX);
    }

    /// No cell, the overflow one included, may owe more than up to `origin + latest`: applied after a reload
    /// with `now + one full burst of the new quota`.
    pub(super) fn cap_debt(&self, latest: u64) {
        let cap = |cell: &InMemoryState| {
            let _unchanged = cell.measure_and_replace(&NotKeyed::NonKey, |tat| match tat {
                Some(t) if t.as_u64() > latest => Ok(((), Nanos::from(latest))),
                _ => Err(()),
            });
        };
        self.cells.iter().for_each(|entry| cap(entry.value()));
        cap(&self.overflow);
    }
}

/// A cell's TAT in nanoseconds since the origin, 0 for a cell never used.
fn tat(cell: &InMemoryState) -> u64 {
    let read = cell.measure_and_replace(&NotKeyed::NonKey, |tat| {
        Err::<((), Nanos), u64>(tat.map_or(0, Nanos::as_u64))
    });
    match read {
        Ok(()) => 0,
        Err(tat) => tat,
    }
}

/// One limiter's view of a [`Table`]: its time shift and its key cap.
pub(super) struct Store<K> {
    table: Arc<Table<K>>,
    /// Nanoseconds from the service's origin to this limiter's start.
    shift: u64,
    max_keys: usize,
}

impl<K> Store<K> {
    pub(super) fn new(table: Arc<Table<K>>, shift: u64, max_keys: usize) -> Self {
        Store {
            table,
            shift,
            max_keys,
        }
    }
}

impl<K: Hash + Eq + Clone> StateStore for Store<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let shift = self.shift;
        // A TAT at or before this limiter's start is in the past: the same as a fresh cell (`None`).
        let rebased = |stored: Option<Nanos>| {
            let tat = stored
                .and_then(|s| s.as_u64().checked_sub(shift))
                .filter(|&t| t > 0)
                .map(Nanos::from);
            f(tat).map(|(out, next)| (out, Nanos::from(next.as_u64() + shift)))
        };
        let table = &*self.table;
        if let Some(cell) = table.cells.get(key) {
            return cell.measure_and_replace(&NotKeyed::NonKey, rebased);
        }
        if table.reserve(self.max_keys) {
            let mut inserted = false;
            let cell = table.cells.entry(key.clone()).or_insert_with(|| {
                inserted = true;
                InMemoryState::default()
            });
            if !inserted {
                // Another request inserted the key first: give the slot back.
                table.len.fetch_sub(1, Ordering::Relaxed);
            }
            return cell.measure_and_replace(&NotKeyed::NonKey, rebased);
        }
        table
            .overflow
            .measure_and_replace(&NotKeyed::NonKey, rebased)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for Store<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.table.retain_after(drop_below.as_u64() + self.shift);
    }

    fn shrink_to_fit(&self) {
        self.table.cells.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn is_empty(&self) -> bool {
        self.table.len() == 0
    }
}
