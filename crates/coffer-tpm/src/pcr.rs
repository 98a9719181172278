//! PCR policies: which bank and which PCRs a node key is sealed to, written `sha256:0,2,7`.

use std::fmt;
use std::str::FromStr;

use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{PcrSelectionList, PcrSelectionListBuilder, PcrSlot};

use crate::TpmError;

/// A PCR bank and the PCRs selected in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PcrPolicy {
    bank: Bank,
    pcrs: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bank {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Bank {
    fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn algorithm(self) -> HashingAlgorithm {
        match self {
            Self::Sha1 => HashingAlgorithm::Sha1,
            Self::Sha256 => HashingAlgorithm::Sha256,
            Self::Sha384 => HashingAlgorithm::Sha384,
            Self::Sha512 => HashingAlgorithm::Sha512,
        }
    }
}

/// A PCR policy that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (write it as BANK:PCR,PCR..., e.g. sha256:0,2,7)")]
pub struct PcrPolicyError(&'static str);

impl PcrPolicy {
    /// Secure Boot state: `sha256:7`, coffer's default.
    pub fn default_policy() -> Self {
        Self {
            bank: Bank::Sha256,
            pcrs: vec![7],
        }
    }

    /// The PCR numbers, ascending.
    pub fn pcrs(&self) -> &[u8] {
        &self.pcrs
    }

    /// The bank's hash.
    pub fn hashing_algorithm(&self) -> HashingAlgorithm {
        self.bank.algorithm()
    }

    pub(crate) fn selection(&self) -> Result<PcrSelectionList, TpmError> {
        let slots: Vec<PcrSlot> = self
            .pcrs
            .iter()
            .map(|&n| {
                PcrSlot::try_from(1u32 << n).map_err(|_| {
                    TpmError::refused("select PCRs", format!("PCR {n} does not exist"))
                })
            })
            .collect::<Result<_, _>>()?;
        PcrSelectionListBuilder::new()
            .with_selection(self.bank.algorithm(), &slots)
            .build()
            .map_err(|e| TpmError::from_tss("select PCRs", e))
    }
}

impl Default for PcrPolicy {
    fn default() -> Self {
        Self::default_policy()
    }
}

impl FromStr for PcrPolicy {
    type Err = PcrPolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (bank, list) = s
            .trim()
            .split_once(':')
            .ok_or(PcrPolicyError("a PCR policy names its bank"))?;
        let bank = match bank.to_ascii_lowercase().as_str() {
            "sha1" => Bank::Sha1,
            "sha256" => Bank::Sha256,
            "sha384" => Bank::Sha384,
            "sha512" => Bank::Sha512,
            _ => {
                return Err(PcrPolicyError(
                    "the bank must be sha1, sha256, sha384 or sha512",
                ));
            }
        };
        let mut pcrs = list
            .split(',')
            .map(|p| p.trim().parse::<u8>().ok().filter(|&n| n < 24))
            .collect::<Option<Vec<u8>>>()
            .ok_or(PcrPolicyError("PCRs are numbers from 0 to 23"))?;
        pcrs.sort_unstable();
        pcrs.dedup();
        if pcrs.is_empty() {
            return Err(PcrPolicyError("a PCR policy selects at least one PCR"));
        }
        Ok(Self { bank, pcrs })
    }
}

impl fmt::Display for PcrPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.bank.name())?;
        for (i, p) in self.pcrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let p: PcrPolicy = "sha256:7,0,2,2".parse().unwrap();
        assert_eq!(p.to_string(), "sha256:0,2,7");
        assert_eq!(PcrPolicy::default().to_string(), "sha256:7");
        for bad in ["7", "md5:7", "sha256:", "sha256:24", "sha256:a"] {
            assert!(bad.parse::<PcrPolicy>().is_err(), "{bad}");
        }
    }
}
