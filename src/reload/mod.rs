//! Reloading the config: what asked for a reload ([`Trigger`]) and the file watcher ([`watch`]) that asks
//! when the config file or a file it names changed. The reload itself — one at a time, whole snapshot, one
//! store, generation and hash — is [`crate::app::Ctx::reload_from`] in [`apply`].

pub mod apply;
pub mod debounce;
pub mod watch;

/// What asked for a reload (or the first load): a log field and an audit-log member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    /// `SIGHUP`.
    Signal,
    /// `POST /admin/reload`.
    Admin,
    /// The file watcher saw a change.
    Watch,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Signal => "signal",
            Trigger::Admin => "admin",
            Trigger::Watch => "watch",
        }
    }
}

/// The applied snapshot's identity: `number` counts applied snapshots from 1 (the one loaded at start),
/// `sha256` is the hex SHA-256 of the config file it was built from (empty for an in-memory snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub number: u64,
    pub sha256: String,
}
