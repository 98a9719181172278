//! coffer's vocabulary: the names, namespaces, kinds, versions, error codes and wire shapes
//! every other crate speaks. No I/O and no secrets live here (values are `SecretBytes`, in
//! coffer-crypto).
#![forbid(unsafe_code)]

#[macro_use]
mod macros;

mod capability;
mod code;
mod generate;
mod kind;
mod metadata;
mod name;
mod time;
mod version;
pub mod wire;

pub use capability::{Capability, UnknownCapability};
pub use code::{ErrorCode, RC_NV_SPACE, RC_NV_UNDEFINED, UnknownCode};
pub use generate::{
    ByteLenError, DigestEncoding, Encoding, GeneratorSpec, HmacAlgorithm, UnknownAlgorithm,
    UnknownDigestEncoding, UnknownEncoding,
};
pub use kind::{Kind, KindError, UnknownKind};
pub use metadata::{SecretMeta, SecretSummary, VersionInfo};
pub use name::{MAX_NAME_LEN, MAX_NAMESPACE_LEN, NameError, Namespace, SecretName};
pub use time::Timestamp;
pub use version::{NvIndex, Version};
