//! The age layer: whom a backup is encrypted to, and what opens it.

use std::io::{BufReader, Read, Write};
use std::path::Path;

use age::secrecy::SecretString;
use coffer_crypto::SecretBytes;

use crate::CoreError;

/// Whom a backup is encrypted to.
pub enum Recipients {
    /// X25519 recipients (`age1...`).
    Keys(Vec<age::x25519::Recipient>),
    /// age's scrypt recipient: a passphrase, the only recipient.
    Passphrase(SecretString),
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keys(k) => write!(f, "Recipients::Keys({})", k.len()),
            Self::Passphrase(_) => f.write_str("Recipients::Passphrase(..)"),
        }
    }
}

impl Recipients {
    /// X25519 recipients from their `age1...` strings; at least one.
    pub fn parse<S: AsRef<str>>(keys: &[S]) -> Result<Self, CoreError> {
        if keys.is_empty() {
            return Err(CoreError::InvalidRequest(
                "a backup needs at least one recipient (an age1... public key) or a passphrase"
                    .to_owned(),
            ));
        }
        keys.iter()
            .map(|k| {
                let k = k.as_ref().trim();
                k.parse::<age::x25519::Recipient>().map_err(|_| {
                    CoreError::InvalidRequest(format!(
                        "{:?} is not an age X25519 recipient (age1...)",
                        k.chars().take(80).collect::<String>()
                    ))
                })
            })
            .collect::<Result<_, _>>()
            .map(Self::Keys)
    }

    /// The recipients of a recipients file: one `age1...` a line; `#` comments and blank
    /// lines are skipped.
    pub fn lines(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    /// A passphrase recipient.
    pub fn passphrase(p: &SecretBytes) -> Result<Self, CoreError> {
        secret_string(p).map(Self::Passphrase)
    }

    /// What a client sends the daemon: the recipients' strings, or the passphrase.
    pub fn to_wire(&self) -> (Vec<String>, Option<SecretBytes>) {
        use age::secrecy::ExposeSecret;
        match self {
            Self::Keys(k) => (k.iter().map(ToString::to_string).collect(), None),
            Self::Passphrase(p) => (
                Vec::new(),
                Some(SecretBytes::copy_from(p.expose_secret().as_bytes())),
            ),
        }
    }

    /// Starts an age file on `out`.
    pub(super) fn wrap<W: Write>(&self, out: W) -> Result<age::stream::StreamWriter<W>, CoreError> {
        let encryptor = match self {
            Self::Keys(keys) => {
                age::Encryptor::with_recipients(keys.iter().map(|k| k as &dyn age::Recipient))
                    .map_err(|e| CoreError::InvalidRequest(format!("age recipients: {e}")))?
            }
            Self::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
        };
        encryptor.wrap_output(out).map_err(super::format::write_err)
    }
}

fn secret_string(p: &SecretBytes) -> Result<SecretString, CoreError> {
    let text = std::str::from_utf8(p.expose_secret())
        .map_err(|_| CoreError::InvalidRequest("the passphrase is not UTF-8".to_owned()))?;
    if text.is_empty() {
        return Err(CoreError::InvalidRequest(
            "the passphrase is empty".to_owned(),
        ));
    }
    Ok(SecretString::from(text.to_owned()))
}

/// What opens a backup's age layer.
pub enum Identity {
    /// An age identity file (`AGE-SECRET-KEY-1...` lines).
    File(Vec<Box<dyn age::Identity>>),
    /// The passphrase of a `--passphrase` backup.
    Passphrase(SecretString),
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(..)")
    }
}

impl Identity {
    /// The identities of an age identity file.
    pub fn from_file(path: &Path) -> Result<Self, CoreError> {
        let file = std::fs::File::open(path).map_err(|e| {
            CoreError::InvalidRequest(format!("identity file {}: {e}", path.display()))
        })?;
        let ids = age::IdentityFile::from_buffer(BufReader::new(file))
            .and_then(|f| {
                f.into_identities().map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })
            })
            .map_err(|_| {
                CoreError::InvalidRequest(format!(
                    "{} is not an age identity file (AGE-SECRET-KEY-1... lines)",
                    path.display()
                ))
            })?;
        if ids.is_empty() {
            return Err(CoreError::InvalidRequest(format!(
                "{} holds no age identity",
                path.display()
            )));
        }
        Ok(Self::File(ids))
    }

    /// A passphrase.
    pub fn passphrase(p: &SecretBytes) -> Result<Self, CoreError> {
        secret_string(p).map(Self::Passphrase)
    }
}

/// Whether the age file `input` starts with is encrypted to a passphrase (age's scrypt
/// recipient).
pub fn is_passphrase<R: Read>(input: R) -> Result<bool, CoreError> {
    age::Decryptor::new(input)
        .map(|d| d.is_scrypt())
        .map_err(decrypt_err)
}

/// Opens the age layer of `input` with `identity`.
pub(super) fn open<R: Read>(
    input: R,
    identity: &Identity,
) -> Result<age::stream::StreamReader<R>, CoreError> {
    let decryptor = age::Decryptor::new(input).map_err(decrypt_err)?;
    let opened = match identity {
        Identity::File(ids) => decryptor.decrypt(ids.iter().map(|i| i.as_ref())),
        Identity::Passphrase(p) => {
            let id = age::scrypt::Identity::new(p.clone());
            decryptor.decrypt(std::iter::once(&id as &dyn age::Identity))
        }
    };
    opened.map_err(decrypt_err)
}

fn decrypt_err(e: age::DecryptError) -> CoreError {
    use age::DecryptError as E;
    match e {
        E::NoMatchingKeys => CoreError::Denied(
            "the identity given does not decrypt this backup (it was encrypted to other \
             recipients)"
                .to_owned(),
        ),
        E::DecryptionFailed | E::KeyDecryptionFailed => CoreError::Denied(
            "the age layer does not open with what was given (a wrong passphrase or identity)"
                .to_owned(),
        ),
        E::Io(e) => super::format::read_err(e),
        E::UnknownFormat => {
            CoreError::Integrity("this is not an age v1 file (is it a coffer backup?)".to_owned())
        }
        other => CoreError::Integrity(format!(
            "the backup's age header is damaged or not one coffer reads: {other}"
        )),
    }
}
