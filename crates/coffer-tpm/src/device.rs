//! The TPM as a device: one thread owns the tss-esapi `Context` (whose calls block and take
//! `&mut self`), and every other thread hands it work and waits for the answer.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use tss_esapi::constants::PropertyTag;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, TpmHandle};
use tss_esapi::{Context, TctiNameConf};

use crate::TpmError;
use crate::error::TssContext;

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
}

impl Session {
    fn open(tcti: &str) -> Result<Self, TpmError> {
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
        })
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
        self.nv.insert(handle, h);
        Ok(h)
    }

    pub(crate) fn remember_nv(&mut self, handle: u32, h: NvIndexHandle) {
        self.nv.insert(handle, h);
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
    /// Connects to the TPM at `tcti` (`device:/dev/tpmrm0`, `swtpm:host=...,port=...`).
    pub fn open(tcti: &str) -> Result<Self, TpmError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = mpsc::sync_channel(1);
        let owned = tcti.to_owned();
        let thread = std::thread::Builder::new()
            .name("coffer-tpm".into())
            .spawn(move || {
                let mut session = match Session::open(&owned) {
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
