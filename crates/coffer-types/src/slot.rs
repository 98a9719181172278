//! Kinds of key slot (DESIGN.md, Key hierarchy), one list for the CLI, the wire and the core.

string_enum! {
    /// The kind of a key slot.
    pub enum SlotKind {
        /// A 32-byte key file.
        File = "file",
        /// A passphrase through Argon2id.
        Passphrase = "passphrase",
        /// The recovery key shown once at init.
        Recovery = "recovery",
        /// A node key sealed by the TPM to a PCR policy: opens with no person present.
        Tpm = "tpm",
        /// The TPM-sealed node key and a passphrase, both needed.
        TpmPassphrase = "tpm+passphrase",
    }
    /// A string that is not a slot kind.
    error UnknownSlotKind = "the slot kind is one of file, passphrase, recovery, tpm, tpm+passphrase";
}

impl SlotKind {
    /// Whether the slot needs the TPM.
    pub const fn uses_tpm(self) -> bool {
        matches!(self, Self::Tpm | Self::TpmPassphrase)
    }

    /// Whether opening the slot takes a passphrase.
    pub const fn takes_passphrase(self) -> bool {
        matches!(self, Self::Passphrase | Self::TpmPassphrase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for &k in SlotKind::ALL {
            assert_eq!(k.as_str().parse::<SlotKind>().unwrap(), k);
        }
        assert_eq!(SlotKind::TpmPassphrase.as_str(), "tpm+passphrase");
        assert!(SlotKind::TpmPassphrase.uses_tpm() && SlotKind::TpmPassphrase.takes_passphrase());
        assert!("hsm".parse::<SlotKind>().is_err());
    }
}
