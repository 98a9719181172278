//! Backups of the open store: the master key is copied out for the backup's length only
//! (the vault may be sealed meanwhile; the backup then still completes, from the snapshot
//! it began with).

use std::io::Write;
use std::path::Path;

use super::state::Vault;
use crate::CoreError;
use crate::backup::{self, Manifest, Recipients, Source, Written};

impl Vault {
    /// Runs `make` on the open store as a backup's source (a copy of the master key for its
    /// length, and the data directory's audit anchor when there is one).
    fn with_source<T>(
        &self,
        data_dir: Option<&Path>,
        make: impl FnOnce(&Source<'_>) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        let master = self.with_master(|m| Ok(m.duplicate()))?;
        let source = Source {
            backend: self.backend.as_ref(),
            master: &master,
            audit_anchor: None,
        }
        .with_anchor_of(data_dir);
        make(&source)
    }

    /// Writes a backup of the open store, encrypted to `to`, onto `out`; with `data_dir`,
    /// its audit anchor goes in too. `progress` hears the rows written.
    pub fn backup<W: Write>(
        &self,
        to: &Recipients,
        out: W,
        data_dir: Option<&Path>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(W, Manifest), CoreError> {
        self.with_source(data_dir, |source| backup::write(source, to, out, progress))
    }

    /// Makes a backup of the open store at `path` (a temporary file beside it, synced and
    /// renamed: `path` never names a partial backup). What scheduled backups call.
    pub fn backup_to_file(
        &self,
        to: &Recipients,
        path: &Path,
        data_dir: Option<&Path>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Written, CoreError> {
        self.with_source(data_dir, |source| {
            backup::to_file(source, to, path, progress)
        })
    }
}
