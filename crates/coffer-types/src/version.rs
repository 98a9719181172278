//! Version numbers and the device-style NV index a secret answers `set` with.

use std::fmt;
use std::num::NonZeroU32;

/// A secret's version: 1 for the first value, one more for each write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(NonZeroU32);

impl Version {
    /// Version 1.
    pub const FIRST: Version = Version(NonZeroU32::MIN);

    /// A version from its number; `None` for 0.
    pub fn new(n: u32) -> Option<Self> {
        NonZeroU32::new(n).map(Self)
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The version after this one, or `None` at `u32::MAX`.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.get())
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        Version::new(n).ok_or_else(|| serde::de::Error::custom("version numbers start at 1"))
    }
}

/// Where a secret lives, in the device daemon's terms: an NV index handle in the
/// `0x0152XXXX` range (reference 000). The TPM NV backend hands out real indices; the other
/// backends hand out the same form, stable for a name across overwrites, so tools written
/// against the device daemon see what they expect.
///
/// The device form `0x0152XXXX` covers the first 65,536 slots; a store with more live secrets
/// continues past it (`0x01530000` and on), still inside the TPM's NV handle type (`0x01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NvIndex(u32);

impl NvIndex {
    /// The first index of coffer's range.
    pub const BASE: u32 = 0x0152_0000;
    /// How many indices have the device form `0x0152XXXX`.
    pub const DEVICE_SPAN: u32 = 0x1_0000;
    /// How many indices exist at all: up to the end of the NV handle type `0x01`.
    pub const SPAN: u32 = 0x0200_0000 - Self::BASE;

    /// The `slot`-th index; `None` past the end of the NV handle type.
    pub fn from_slot(slot: u32) -> Option<Self> {
        (slot < Self::SPAN).then_some(Self(Self::BASE + slot))
    }

    /// A handle value, if it lies in coffer's range.
    pub fn from_handle(handle: u32) -> Option<Self> {
        (Self::BASE..Self::BASE + Self::SPAN)
            .contains(&handle)
            .then_some(Self(handle))
    }

    /// The position inside the range.
    pub fn slot(self) -> u32 {
        self.0 - Self::BASE
    }

    /// The TPM handle value.
    pub fn handle(self) -> u32 {
        self.0
    }
}

impl fmt::Display for NvIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

impl serde::Serialize for NvIndex {
    /// As the device daemon shows it: `"0x01520042"`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NvIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.strip_prefix("0x")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .and_then(NvIndex::from_handle)
            .ok_or_else(|| serde::de::Error::custom("not an NV index of the form 0x0152XXXX"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_serializes_as_text() {
        let i = NvIndex::from_slot(0x42).unwrap();
        assert_eq!(serde_json::to_string(&i).unwrap(), r#""0x01520042""#);
        assert_eq!(
            serde_json::from_str::<NvIndex>(r#""0x01520042""#).unwrap(),
            i
        );
        assert!(serde_json::from_str::<NvIndex>(r#""0x00000001""#).is_err());
    }

    #[test]
    fn versions_start_at_one() {
        assert!(Version::new(0).is_none());
        assert_eq!(Version::FIRST.get(), 1);
        assert_eq!(Version::FIRST.next().unwrap().get(), 2);
        assert!(Version::new(u32::MAX).unwrap().next().is_none());
        assert!(serde_json::from_str::<Version>("0").is_err());
    }

    #[test]
    fn index_has_the_device_form() {
        assert_eq!(NvIndex::from_slot(0x42).unwrap().to_string(), "0x01520042");
        assert_eq!(
            NvIndex::from_slot(0xffff).unwrap().to_string(),
            "0x0152ffff"
        );
        assert_eq!(
            NvIndex::from_slot(0x1_0000).unwrap().to_string(),
            "0x01530000"
        );
        assert!(NvIndex::from_slot(NvIndex::SPAN).is_none());
        assert_eq!(NvIndex::from_handle(0x0152_0042).unwrap().slot(), 0x42);
        assert!(NvIndex::from_handle(0x0151_ffff).is_none());
        assert!(NvIndex::from_handle(0x0200_0000).is_none());
    }
}
