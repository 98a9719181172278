//! coffer's vocabulary: the names, namespaces, kinds, versions, error codes and wire shapes
//! every other crate speaks. No I/O and no secrets live here (values are `SecretBytes`, in
//! coffer-crypto).
#![forbid(unsafe_code)]

#[macro_use]
mod macros;

mod action;
mod capability;
mod code;
pub mod custom;
pub mod duration;
mod event;
mod generate;
mod kind;
mod metadata;
mod name;
pub mod reply;
mod rotation;
mod slot;
mod target;
mod time;
mod version;
pub mod webhook;
pub mod wire;

pub use action::{Action, UnknownAction};
pub use capability::{Capability, UnknownCapability};
pub use code::{ErrorCode, RC_NV_SPACE, RC_NV_UNDEFINED, UnknownCode};
pub use event::{ChangeEvent, EventAction, UnknownEventAction, WatchLine};
pub use generate::{
    ByteLenError, DigestEncoding, Encoding, GeneratorSpec, HmacAlgorithm, UnknownAlgorithm,
    UnknownDigestEncoding, UnknownEncoding,
};
pub use kind::{Kind, KindError, MAX_KV_DEPTH, UnknownKind, json_depth};
pub use metadata::{SecretMeta, SecretSummary, VersionInfo};
pub use name::{MAX_NAME_LEN, MAX_NAMESPACE_LEN, NameError, Namespace, SecretName};
pub use rotation::{RotationInfo, RotationOutcome, RotationPolicy};
pub use slot::{SlotKind, UnknownSlotKind};
pub use target::{Parsed, RefError, SecretRef, Target, parse_namespace};
pub use time::Timestamp;
pub use version::{NvIndex, Version};
