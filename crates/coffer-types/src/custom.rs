//! Limits of a secret's custom metadata (KV v2's `custom_metadata`), the same as Vault's.

use std::collections::BTreeMap;

/// Most keys.
pub const MAX_KEYS: usize = 64;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Longest value, in bytes.
pub const MAX_VALUE_LEN: usize = 512;

/// Custom metadata outside the limits. The message names the limit, never a key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CustomMetadataError(String);

/// Checks custom metadata against the limits.
pub fn check(map: &BTreeMap<String, String>) -> Result<(), CustomMetadataError> {
    if map.len() > MAX_KEYS {
        return Err(CustomMetadataError(format!(
            "custom_metadata has {} keys; at most {MAX_KEYS} are allowed",
            map.len()
        )));
    }
    for (k, v) in map {
        if k.is_empty() || k.len() > MAX_KEY_LEN {
            return Err(CustomMetadataError(format!(
                "custom_metadata keys are 1 to {MAX_KEY_LEN} bytes"
            )));
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(CustomMetadataError(format!(
                "custom_metadata values are at most {MAX_VALUE_LEN} bytes"
            )));
        }
    }
    Ok(())
}

/// A change of custom metadata: a replacement, or a merge in which `None` removes a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomMetadataChange {
    /// Replace the whole map.
    Replace(BTreeMap<String, String>),
    /// Merge into the map: `Some` sets a key, `None` removes it.
    Merge(BTreeMap<String, Option<String>>),
}

impl CustomMetadataChange {
    /// Applies the change to `current` and checks the result against the limits.
    pub fn apply(
        &self,
        current: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, CustomMetadataError> {
        let next = match self {
            Self::Replace(map) => map.clone(),
            Self::Merge(patch) => {
                let mut next = current.clone();
                for (k, v) in patch {
                    match v {
                        Some(v) => next.insert(k.clone(), v.clone()),
                        None => next.remove(k),
                    };
                }
                next
            }
        };
        check(&next)?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_merges() {
        let mut big = BTreeMap::new();
        for i in 0..=MAX_KEYS {
            big.insert(format!("k{i}"), "v".to_owned());
        }
        assert!(check(&big).unwrap_err().to_string().contains("65 keys"));
        let long = BTreeMap::from([("k".to_owned(), "v".repeat(MAX_VALUE_LEN + 1))]);
        assert!(check(&long).is_err());
        let current = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]);
        let merged = CustomMetadataChange::Merge(BTreeMap::from([
            ("a".to_owned(), None),
            ("c".to_owned(), Some("3".to_owned())),
        ]))
        .apply(&current)
        .unwrap();
        assert_eq!(merged.keys().collect::<Vec<_>>(), ["b", "c"]);
        let grow = CustomMetadataChange::Merge(
            (0..MAX_KEYS)
                .map(|i| (format!("n{i}"), Some("v".to_owned())))
                .collect(),
        );
        assert!(
            grow.apply(&current).is_err(),
            "the limit holds after a merge"
        );
    }
}
