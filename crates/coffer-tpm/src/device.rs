//! The TPM as a device: one thread owns the tss-esapi `Context` (whose calls block and take
//! `&mut self`), and every other thread hands it work and waits for the answer.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use coffer_crypto::SecretBytes;
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::{PropertyTag, SessionType};
use tss_esapi::handles::{
    KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, SessionHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Auth, EccPoint, PublicBuilder, PublicEccParametersBuilder, SymmetricDefinition,
    SymmetricDefinitionObject,
};
use tss_esapi::{Context, TctiNameConf};

use crate::TpmError;
use crate::error::TssContext;

/// coffer's own authorization for what it keeps in the TPM (docs/key-hierarchy.md, "TPM
/// authorization"): 32 random bytes, kept outside the TPM in a file only the daemon's user
/// reads, from which the authValue of every NV index and of every sealed node key is derived.
/// Whoever can open the TPM but not read that file can neither read coffer's NV indices nor
/// unseal its node keys, whatever the owner authorization and the PCRs are. Its `Debug`
/// shows nothing.
pub struct TpmAuth(SecretBytes);

impl fmt::Debug for TpmAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TpmAuth(..)")
    }
}

/// What a derived authorization opens (each a distinct BLAKE3 key-derivation context).
#[derive(Debug, Clone, Copy)]
pub(crate) enum AuthFor {
    /// coffer's NV indices (the NV store, and NV counters).
    NvIndex,
    /// A sealed node key (with the PCR policy: PolicyPCR then PolicyAuthValue).
    SealedKey,
}

impl TpmAuth {
    /// Bytes of a TPM authorization secret.
    pub const LEN: usize = 32;

    /// A fresh random one.
    pub fn generate() -> Result<Self, TpmError> {
        SecretBytes::random(Self::LEN)
            .map(Self)
            .map_err(|e| TpmError::refused("make a TPM authorization", e.to_string()))
    }

    /// From its bytes (exactly [`TpmAuth::LEN`]).
    pub fn from_bytes(bytes: SecretBytes) -> Result<Self, TpmError> {
        if bytes.len() != Self::LEN {
            return Err(TpmError::refused(
                "read the TPM authorization",
                format!("it must be {} bytes, not {}", Self::LEN, bytes.len()),
            ));
        }
        Ok(Self(bytes))
    }

    /// Reads the file at `path`, or creates it (mode 0600, written whole to a temporary
    /// file, synced, then renamed into place, so a crash never leaves a short one) when it
    /// does not exist. A file that others may read is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, TpmError> {
        let refused = |e: std::io::Error| {
            TpmError::refused(
                "read the TPM authorization",
                format!("{}: {e}", path.display()),
            )
        };
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(TpmError::refused(
                        "read the TPM authorization",
                        format!(
                            "{} may be read by others (mode {:o}); chmod 600 it",
                            path.display(),
                            meta.permissions().mode() & 0o777
                        ),
                    ));
                }
                let bytes = std::fs::read(path).map_err(refused)?;
                Self::from_bytes(SecretBytes::from_vec(bytes)).map_err(|_| {
                    TpmError::refused(
                        "read the TPM authorization",
                        format!("{} is not {} bytes", path.display(), Self::LEN),
                    )
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let auth = Self::generate()?;
                let tmp = path.with_extension("tmp");
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(refused)?;
                file.write_all(auth.0.expose_secret())
                    .and_then(|()| file.sync_all())
                    .map_err(refused)?;
                std::fs::rename(&tmp, path).map_err(refused)?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(refused)?;
                }
                Ok(auth)
            }
            Err(e) => Err(refused(e)),
        }
    }

    /// The authValue for `what`: BLAKE3 in key-derivation mode, 32 bytes (the most an
    /// object or index named with SHA-256 takes).
    pub(crate) fn derive(&self, what: AuthFor) -> Result<Auth, TpmError> {
        let context = match what {
            AuthFor::NvIndex => "coffer tpm nv index auth v1",
            AuthFor::SealedKey => "coffer tpm sealed node key auth v1",
        };
        let mut key = blake3::derive_key(context, self.0.expose_secret());
        let auth = Auth::try_from(key.to_vec()).during("derive a TPM authorization");
        zeroize::Zeroize::zeroize(&mut key);
        auth
    }
}

/// Which way a salted session encrypts a command's first parameter (`decrypt`, the TPM
/// decrypts what coffer sends) and a response's (`encrypt`, the TPM encrypts what it
/// answers). The TPM refuses either on a command whose parameter cannot be encrypted, so
/// each command says which it has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encrypt {
    /// The command's first parameter (NV write data, a sealed object's sensitive part).
    pub command: bool,
    /// The response's first parameter (NV read data, an unsealed key).
    pub response: bool,
}

/// Starts a session salted to `salt` (a storage key: the salt crosses the bus encrypted to
/// it, so no one watching the bus learns the session key) with AES-128-CFB parameter
/// encryption, or an unsalted one for a trial.
pub(crate) fn start_salted(
    ctx: &mut Context,
    salt: Option<KeyHandle>,
    kind: SessionType,
) -> Result<AuthSession, TpmError> {
    ctx.start_auth_session(
        salt,
        None,
        None,
        kind,
        SymmetricDefinition::AES_128_CFB,
        HashingAlgorithm::Sha256,
    )
    .during("start a TPM session")?
    .ok_or_else(|| TpmError::refused("start a TPM session", "the TPM gave no session"))
}

/// Sets which parameters `session` encrypts for the next command, and keeps it open.
pub(crate) fn encrypting(
    ctx: &mut Context,
    session: AuthSession,
    how: Encrypt,
) -> Result<(), TpmError> {
    let (attributes, mask) = SessionAttributesBuilder::new()
        .with_continue_session(true)
        .with_decrypt(how.command)
        .with_encrypt(how.response)
        .build();
    ctx.tr_sess_set_attributes(session, attributes, mask)
        .during("set a session's encryption")
}

/// The storage primary: parent of sealed keys and the key sessions are salted to.
pub(crate) fn primary(ctx: &mut Context) -> Result<KeyHandle, TpmError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .during("describe the storage key")?;
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()
            .during("describe the storage key")?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .during("describe the storage key")?;
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.create_primary(Hierarchy::Owner, public, None, None, None, None)
    })
    .map(|r| r.key_handle)
    .during("create the storage key")
}

/// Flushes an object, logging (never failing) when the TPM refuses.
pub(crate) fn flush(ctx: &mut Context, handle: ObjectHandle) {
    if let Err(e) = ctx.flush_context(handle) {
        tracing::warn!(error = %e, "could not flush a TPM handle");
    }
}

/// Flushes a session, logging (never failing) when the TPM refuses.
pub(crate) fn flush_session(ctx: &mut Context, session: AuthSession) {
    if let Err(e) = ctx.flush_context(SessionHandle::from(session).into()) {
        tracing::warn!(error = %e, "could not flush a TPM session");
    }
}

/// The kernel's TPM resource manager.
pub const DEVICE: &str = "/dev/tpmrm0";
/// The variable that names a TCTI, such as `swtpm:host=127.0.0.1,port=2321`.
pub const TCTI_VARIABLE: &str = "COFFER_TPM_TCTI";

/// The TCTI to use when none is configured: `COFFER_TPM_TCTI`, else the kernel device when it
/// exists, else none.
pub fn discover() -> Option<String> {
    if let Some(tcti) = std::env::var(TCTI_VARIABLE).ok().filter(|t| !t.is_empty()) {
        return Some(tcti);
    }
    std::path::Path::new(DEVICE)
        .exists()
        .then(|| format!("device:{DEVICE}"))
}

/// What the TPM thread holds: the context and what it learned about the TPM.
pub struct Session {
    /// The context.
    pub(crate) ctx: Context,
    /// ESYS handles of NV indices already looked up.
    nv: HashMap<u32, NvIndexHandle>,
    /// Largest NV index, in bytes (TPM_PT_NV_INDEX_MAX).
    pub(crate) index_max: usize,
    /// Largest NV read or write, in bytes (TPM_PT_NV_BUFFER_MAX).
    pub(crate) buffer_max: usize,
    /// coffer's authorization for its NV indices and sealed keys.
    pub(crate) auth: TpmAuth,
    /// The salted HMAC session NV reads and writes use, started at the first and kept.
    salted: Option<AuthSession>,
}

impl Session {
    fn open(tcti: &str, auth: TpmAuth) -> Result<Self, TpmError> {
        let unreachable = |reason: String| TpmError::Unreachable {
            tcti: tcti.to_owned(),
            reason,
        };
        let conf = TctiNameConf::from_str(tcti).map_err(|e| unreachable(e.to_string()))?;
        let mut ctx = Context::new(conf).map_err(|e| unreachable(e.to_string()))?;
        let property = |ctx: &mut Context, tag, fallback: u32| -> Result<usize, TpmError> {
            let v = ctx
                .get_tpm_property(tag)
                .during("read TPM properties")?
                .unwrap_or(fallback);
            Ok(usize::try_from(v).unwrap_or(usize::MAX))
        };
        let index_max = property(&mut ctx, PropertyTag::NvIndexMax, 2048)?;
        let buffer_max = property(&mut ctx, PropertyTag::NvBufferMax, 1024)?;
        Ok(Self {
            ctx,
            nv: HashMap::new(),
            index_max,
            buffer_max,
            auth,
            salted: None,
        })
    }

    /// Runs `f` with the salted HMAC session set to encrypt `how` (started once, salted to
    /// the storage primary, then kept: one primary per TPM thread, not one per command). A
    /// session the TPM refused with is flushed and the next call starts another.
    pub(crate) fn with_salted<T>(
        &mut self,
        how: Encrypt,
        f: impl FnOnce(&mut Context, AuthSession) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let session = match self.salted {
            Some(s) => s,
            None => {
                let primary = primary(&mut self.ctx)?;
                let started = start_salted(&mut self.ctx, Some(primary), SessionType::Hmac);
                flush(&mut self.ctx, primary.into());
                let s = started?;
                self.salted = Some(s);
                s
            }
        };
        let result =
            encrypting(&mut self.ctx, session, how).and_then(|()| f(&mut self.ctx, session));
        if result.is_err() {
            self.salted = None;
            flush_session(&mut self.ctx, session);
        }
        result
    }

    /// The ESYS handle of an NV index, looked up once.
    pub(crate) fn nv_handle(&mut self, handle: u32) -> Result<NvIndexHandle, TpmError> {
        if let Some(h) = self.nv.get(&handle) {
            return Ok(*h);
        }
        let tpm_handle = NvIndexTpmHandle::new(handle)
            .map_err(|_| TpmError::refused("address an NV index", "not an NV index handle"))?;
        let object = self
            .ctx
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
            .during("look up an NV index")?;
        let h = NvIndexHandle::from(object);
        self.remember_nv(handle, h)?;
        Ok(h)
    }

    /// Keeps an index's ESYS handle, with coffer's authorization for it set.
    pub(crate) fn remember_nv(&mut self, handle: u32, h: NvIndexHandle) -> Result<(), TpmError> {
        let auth = self.auth.derive(AuthFor::NvIndex)?;
        self.ctx
            .tr_set_auth(h.into(), auth)
            .during("set an NV index's authorization")?;
        self.nv.insert(handle, h);
        Ok(())
    }

    pub(crate) fn forget_nv(&mut self, handle: u32) {
        self.nv.remove(&handle);
    }
}

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// A TPM, reached through a TCTI, with its context owned by one thread.
pub struct Tpm {
    tcti: String,
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Tpm {
    /// Connects to the TPM at `tcti` (`device:/dev/tpmrm0`, `swtpm:host=...,port=...`), with
    /// coffer's authorization for the NV indices and sealed keys it makes and opens.
    pub fn open(tcti: &str, auth: TpmAuth) -> Result<Self, TpmError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = mpsc::sync_channel(1);
        let owned = tcti.to_owned();
        let thread = std::thread::Builder::new()
            .name("coffer-tpm".into())
            .spawn(move || {
                let mut session = match Session::open(&owned, auth) {
                    Ok(s) => {
                        let _ = ready.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&mut session);
                }
                if let Some(salted) = session.salted.take() {
                    flush_session(&mut session.ctx, salted);
                }
            })
            .map_err(|e| TpmError::refused("start the TPM thread", e.to_string()))?;
        opened.recv().map_err(|_| TpmError::Stopped)??;
        Ok(Self {
            tcti: tcti.to_owned(),
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The TCTI this TPM was reached through.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Runs `f` on the TPM thread and waits for its answer.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<T, TpmError> + Send + 'static,
    ) -> Result<T, TpmError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |session| {
            let _ = reply.send(f(session));
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .ok_or(TpmError::Stopped)?
            .send(job)
            .map_err(|_| TpmError::Stopped)?;
        answer.recv().map_err(|_| TpmError::Stopped)?
    }

    /// Largest NV index and largest NV transfer, in bytes.
    pub fn nv_limits(&self) -> Result<(usize, usize), TpmError> {
        self.run(|s| Ok((s.index_max, s.buffer_max)))
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
    }
}
