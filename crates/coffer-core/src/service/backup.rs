//! Gate 7 for a backup (`sudo` on `sys/backup` was checked at gate 5): the recipients are
//! checked here, then the backup is made on a blocking thread while the listener streams it.

use coffer_crypto::SecretBytes;
use coffer_store::Change;
use coffer_types::{EventAction, Namespace};

use super::state::{Gated, Service, at};
use crate::backup::{BackupStream, Recipients};
use crate::{CoreError, Gate, Reply};

impl Service {
    pub(super) fn backup(
        &self,
        recipients: Vec<String>,
        passphrase: Option<SecretBytes>,
        actor: String,
    ) -> Gated<Reply> {
        let to = match passphrase {
            Some(_) if !recipients.is_empty() => Err(CoreError::InvalidRequest(
                "a passphrase must be a backup's only recipient".to_owned(),
            )),
            Some(p) => Recipients::passphrase(&p),
            None => Recipients::parse(&recipients),
        }
        .map_err(at(Gate::Validation))?;
        // Gate 1 opened the store; a seal meanwhile fails the stream, not the request.
        let store = self.store()?;
        let vault = self.vault.clone();
        let data_dir = self.data_dir.get().cloned();
        Ok(Reply::Backup(Box::new(BackupStream::start(move |out| {
            let made = vault.backup(&to, out, data_dir.as_deref(), &mut |_| {})?;
            // The snapshot was read whole: the backup is made (the stream's end is the
            // listener's). Its event says so, like a scheduled one's.
            let by = Change::by(&actor);
            if let Err(e) = store.note(&Namespace::system(), by, EventAction::BackupMade) {
                tracing::warn!(error = %e, "the event of a backup could not be kept");
            }
            Ok(made)
        }))))
    }
}
