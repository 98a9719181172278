//! Checkpoints: the chain head (a record's seq, hash and file) under a MAC keyed from the
//! master key, so removing records from the end of the log is detected.
//!
//! `dir/checkpoint` holds two fixed 256-byte slots, written alternately with `pwrite` and each
//! followed by `fdatasync`: a slot torn by a crash fails to parse or to verify and the other
//! still holds the previous checkpoint. A slot is one JSON object padded with spaces and ending
//! in `\n`. The reader takes the valid slot with the highest seq. The writer only checkpoints
//! records already synced, so a checkpoint is never ahead of what survives a power cut.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use coffer_crypto::AuditKeys;
use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::chain::{self, Hash};
use crate::counter::Count;

/// The checkpoint file's name inside the audit directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";

/// The name of the checkpoint's copy the daemon keeps in its data directory, outside the
/// audit directory (`DATA_DIR/audit-anchor`).
pub const ANCHOR_FILE: &str = "audit-anchor";

/// The size of one slot; the file holds two.
const SLOT: usize = 256;

/// What a checkpoint anchors: a record, by seq, hash and the file holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) seq: u64,
    pub(crate) hash: Hash,
    pub(crate) file: String,
    /// The counter value it was written under (where the log has a counter).
    pub(crate) counter: Option<Count>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotText<'a> {
    seq: u64,
    hash: &'a str,
    file: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counter: Option<&'a str>,
    mac: &'a str,
}

impl Checkpoint {
    /// The bytes the MAC covers; versioned so a later format cannot be confused with this one
    /// (v2 adds the counter, so a counter cannot be added, removed or changed).
    fn message(&self) -> String {
        let base = format!("{}\n{}\n{}", self.seq, self.hash.to_hex(), self.file);
        match self.counter {
            None => format!("coffer audit checkpoint v1\n{base}"),
            Some(c) => format!("coffer audit checkpoint v2\n{base}\ncounter {}", c.text()),
        }
    }

    /// One slot: the JSON object, spaces, and a final `\n`.
    fn encode(&self, keys: &AuditKeys) -> Result<[u8; SLOT], AuditError> {
        let mac = data_encoding::HEXLOWER.encode(&keys.checkpoint_mac(self.message().as_bytes()));
        let counter = self.counter.map(Count::text);
        let text = SlotText {
            seq: self.seq,
            hash: &self.hash.to_hex(),
            file: &self.file,
            counter: counter.as_deref(),
            mac: &mac,
        };
        let json = serde_json::to_vec(&text).map_err(|e| AuditError::Encode {
            reason: e.to_string(),
        })?;
        // seq (at most 20 digits), two 64-digit hex strings, a 32-byte file name and a
        // counter (at most 20 digits): at most 249 bytes.
        if json.len() >= SLOT {
            return Err(AuditError::Encode {
                reason: format!("a checkpoint of {} bytes does not fit its slot", json.len()),
            });
        }
        let mut slot = [b' '; SLOT];
        slot[..json.len()].copy_from_slice(&json);
        slot[SLOT - 1] = b'\n';
        Ok(slot)
    }

    /// A slot's checkpoint, if it parses and its MAC verifies.
    fn decode(slot: &[u8], keys: &AuditKeys) -> Option<Self> {
        if slot.len() != SLOT || slot[SLOT - 1] != b'\n' {
            return None;
        }
        let text: SlotText<'_> = serde_json::from_slice(slot).ok()?;
        chain::parse_file_name(text.file)?;
        let cp = Self {
            seq: text.seq,
            hash: Hash::from_hex(text.hash)?,
            file: text.file.to_owned(),
            counter: match text.counter {
                None => None,
                Some(c) => Some(Count::parse(c)?),
            },
        };
        let mac = data_encoding::HEXLOWER.decode(text.mac.as_bytes()).ok()?;
        keys.checkpoint_mac_ok(cp.message().as_bytes(), &mac)
            .then_some(cp)
    }
}

/// The two slots of a checkpoint file, as far as they verify.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// Whether the file exists at all.
    pub(crate) exists: bool,
    valid: [Option<Checkpoint>; 2],
}

impl Slots {
    /// The valid checkpoint with the highest seq.
    pub(crate) fn newest(&self) -> Option<&Checkpoint> {
        self.valid.iter().flatten().max_by_key(|c| c.seq)
    }

    /// Every valid checkpoint.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Checkpoint> {
        self.valid.iter().flatten()
    }

    /// The slot to write next: an invalid one, else the older one.
    pub(crate) fn next_slot(&self) -> usize {
        match &self.valid {
            [None, _] => 0,
            [Some(_), None] => 1,
            [Some(a), Some(b)] => usize::from(a.seq > b.seq),
        }
    }
}

/// Reads and verifies the slots of `dir/checkpoint`; a missing file has no valid slot.
pub(crate) fn read(dir: &Path, keys: &AuditKeys) -> Result<Slots, AuditError> {
    read_file(&dir.join(CHECKPOINT_FILE), keys)
}

/// Reads and verifies the slots of a checkpoint file (the directory's or the anchor).
pub(crate) fn read_file(path: &Path, keys: &AuditKeys) -> Result<Slots, AuditError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Slots::default()),
        Err(source) => {
            return Err(AuditError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let slot = |i: usize| {
        bytes
            .get(i * SLOT..(i + 1) * SLOT)
            .and_then(|s| Checkpoint::decode(s, keys))
    };
    Ok(Slots {
        exists: true,
        valid: [slot(0), slot(1)],
    })
}

/// Writes `cp` into slot `slot` of `dir/checkpoint` and syncs it (and the directory, when
/// the file is new).
pub(crate) fn write(
    dir: &Path,
    slot: usize,
    cp: &Checkpoint,
    keys: &AuditKeys,
) -> Result<(), AuditError> {
    write_file(&dir.join(CHECKPOINT_FILE), slot, cp, keys)
}

/// Writes `cp` into slot `slot` of the checkpoint file `path` and syncs it. Refused
/// ([`AuditError::Lower`]) when the file holds a valid checkpoint of a higher seq: a
/// checkpoint's sequence never goes down.
pub(crate) fn write_file(
    path: &Path,
    slot: usize,
    cp: &Checkpoint,
    keys: &AuditKeys,
) -> Result<(), AuditError> {
    if let Some(newest) = read_file(path, keys)?.newest()
        && newest.seq > cp.seq
    {
        return Err(AuditError::Lower {
            path: path.to_path_buf(),
            stored: newest.seq,
            new: cp.seq,
        });
    }
    let bytes = cp.encode(keys)?;
    let fail = |e: io::Error| AuditError::unavailable(path, &e);
    let created = !path.exists();
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false) // the other slot holds the previous checkpoint
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.write_all_at(&bytes, (slot * SLOT) as u64)
        .map_err(fail)?;
    file.sync_data().map_err(fail)?;
    if created && let Some(dir) = path.parent() {
        sync_dir(dir).map_err(|e| AuditError::unavailable(dir, &e))?;
    }
    Ok(())
}

/// Makes the directory's entries (a new audit or checkpoint file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crypto::SecretBytes;

    fn keys(b: u8) -> AuditKeys {
        AuditKeys::from_bytes(
            SecretBytes::copy_from(&[1; 32]),
            SecretBytes::copy_from(&[b; 32]),
        )
        .unwrap()
    }

    fn cp(seq: u64) -> Checkpoint {
        Checkpoint {
            seq,
            hash: Hash::of_line(seq.to_string().as_bytes()),
            file: chain::file_name(1),
            counter: None,
        }
    }

    #[test]
    fn slots_round_trip_and_reject_other_keys_and_tears() {
        let k = keys(2);
        let slot = cp(u64::MAX).encode(&k).unwrap();
        assert_eq!(Checkpoint::decode(&slot, &k), Some(cp(u64::MAX)));
        assert_eq!(Checkpoint::decode(&slot, &keys(3)), None);
        // The largest checkpoint with a counter fits, and its counter is under the MAC.
        let mut big = cp(u64::MAX);
        big.file = chain::file_name(u64::MAX);
        big.counter = Some(Count::At(u64::MAX));
        let enc = big.encode(&k).unwrap();
        assert_eq!(Checkpoint::decode(&enc, &k), Some(big.clone()));
        let text = String::from_utf8(enc.to_vec()).unwrap();
        let forged = text.replace(
            "\"counter\":\"18446744073709551615\"",
            "\"counter\":\"18446744073709551614\"",
        );
        assert_ne!(forged, text);
        assert_eq!(Checkpoint::decode(forged.as_bytes(), &k), None);
        let pending = Checkpoint {
            counter: Some(Count::Pending),
            ..cp(3)
        };
        assert_eq!(
            Checkpoint::decode(&pending.encode(&k).unwrap(), &k),
            Some(pending)
        );
        let mut torn = slot;
        torn[100..].fill(0);
        assert_eq!(Checkpoint::decode(&torn, &k), None);
        for i in 0..SLOT {
            let mut flipped = slot;
            flipped[i] ^= 0x01;
            assert_eq!(Checkpoint::decode(&flipped, &k), None, "byte {i}");
        }
    }

    #[test]
    fn the_newest_valid_slot_wins_and_the_other_is_written_next() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys(2);
        let slots = read(dir.path(), &k).unwrap();
        assert!(!slots.exists && slots.newest().is_none());
        assert_eq!(slots.next_slot(), 0);

        write(dir.path(), 0, &cp(5), &k).unwrap();
        let slots = read(dir.path(), &k).unwrap();
        assert_eq!((slots.newest(), slots.next_slot()), (Some(&cp(5)), 1));
        write(dir.path(), 1, &cp(9), &k).unwrap();
        let slots = read(dir.path(), &k).unwrap();
        assert_eq!((slots.newest(), slots.next_slot()), (Some(&cp(9)), 0));

        // A torn slot 1 leaves slot 0's checkpoint in force.
        let path = dir.path().join(CHECKPOINT_FILE);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0; 64], SLOT as u64 + 10).unwrap();
        let slots = read(dir.path(), &k).unwrap();
        assert_eq!((slots.newest(), slots.next_slot()), (Some(&cp(5)), 1));
        assert!(read(dir.path(), &keys(3)).unwrap().newest().is_none());
    }

    #[test]
    fn a_checkpoint_never_goes_down() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys(2);
        write(dir.path(), 0, &cp(9), &k).unwrap();
        let err = write(dir.path(), 1, &cp(5), &k).unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Lower {
                    stored: 9,
                    new: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(read(dir.path(), &k).unwrap().newest(), Some(&cp(9)));
        write(dir.path(), 1, &cp(9), &k).unwrap();
        write(dir.path(), 0, &cp(10), &k).unwrap();
    }
}
