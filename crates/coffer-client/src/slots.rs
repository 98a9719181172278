//! Key slots: the ways the store's master key can be opened (DESIGN.md, Key hierarchy).
//! Adding, removing and resealing need the store unsealed and `sudo` on `sys/slots`.

use coffer_crypto::SecretBytes;
use coffer_types::SlotKind;
use coffer_types::wire::SlotSummary;

use crate::ClientError;
use crate::request::Client;

/// A key slot to add.
#[derive(Debug, Clone, Copy)]
pub struct NewSlot<'a> {
    /// Its kind.
    pub kind: SlotKind,
    /// The PCR policy of a TPM slot, e.g. `sha256:0,2,7` (the daemon's default: `sha256:7`).
    pub pcrs: Option<&'a str>,
    /// The key file of a file slot (minted when missing), as the daemon sees it.
    pub path: Option<&'a str>,
    /// The passphrase of a passphrase or tpm+passphrase slot.
    pub passphrase: Option<&'a SecretBytes>,
}

impl NewSlot<'_> {
    /// A slot of `kind` with nothing else given.
    pub fn new(kind: SlotKind) -> Self {
        Self {
            kind,
            pcrs: None,
            path: None,
            passphrase: None,
        }
    }
}

/// A slot just added.
#[derive(Debug)]
pub struct AddedSlot {
    /// Its id.
    pub id: u32,
    /// The recovery key, for a recovery slot: shown this once.
    pub recovery_key: Option<SecretBytes>,
}

impl Client {
    /// The key slots.
    pub fn slots(&self) -> Result<Vec<SlotSummary>, ClientError> {
        self.call(&self.request("slot_list").finish())?
            .slots
            .ok_or(ClientError::Protocol("a slot_list reply without slots"))
    }

    /// Adds a key slot; answers its id and, for a recovery slot, the recovery key.
    pub fn add_slot(&self, slot: &NewSlot<'_>) -> Result<AddedSlot, ClientError> {
        let mut b = self
            .request("slot_add")
            .field("kind", slot.kind.as_str())
            .opt("pcrs", slot.pcrs)
            .opt("path", slot.path);
        if let Some(key) = slot.passphrase {
            b = b.secret("key", key);
        }
        let mut reply = self.call(&b.finish())?;
        Ok(AddedSlot {
            id: reply
                .slot_id
                .ok_or(ClientError::Protocol("a slot_add reply without slot_id"))?,
            recovery_key: reply.recovery_key.take(),
        })
    }

    /// Removes a key slot (the daemon refuses the last one).
    pub fn remove_slot(&self, id: u32) -> Result<(), ClientError> {
        let request = self
            .request("slot_remove")
            .number("slot_id", id.into())
            .finish();
        self.call(&request).map(drop)
    }

    /// Replaces the store's master key (`coffer rotate-master`): `passphrases` open its
    /// passphrase slots; with `drop_passphrase_slots`, those none opens are dropped.
    /// Answers the new recovery key (shown this once; `None` without a recovery slot) and
    /// the slots dropped.
    pub fn rotate_master(
        &self,
        passphrases: &[SecretBytes],
        drop_passphrase_slots: bool,
    ) -> Result<(Option<SecretBytes>, Vec<u32>), ClientError> {
        let mut joined = Vec::new();
        for p in passphrases {
            joined.extend_from_slice(p.expose_secret());
            joined.push(b'\n');
        }
        let joined = SecretBytes::from_vec(joined);
        let mut b = self.request("rotate_master");
        if !passphrases.is_empty() {
            b = b.secret("passphrases", &joined);
        }
        if drop_passphrase_slots {
            b = b.flag("drop_passphrase_slots", true);
        }
        let mut reply = self.call(&b.finish())?;
        Ok((
            reply.recovery_key.take(),
            reply.dropped_slots.take().unwrap_or_default(),
        ))
    }

    /// Seals TPM slots (one, or every one) to the PCRs' current values; answers those
    /// resealed. A tpm+passphrase slot needs its passphrase.
    pub fn reseal(
        &self,
        id: Option<u32>,
        passphrase: Option<&SecretBytes>,
    ) -> Result<Vec<u32>, ClientError> {
        let mut b = self
            .request("slot_reseal")
            .opt_number("slot_id", id.map(u64::from));
        if let Some(key) = passphrase {
            b = b.secret("key", key);
        }
        self.call(&b.finish())?
            .resealed
            .ok_or(ClientError::Protocol(
                "a slot_reseal reply without resealed",
            ))
    }
}
