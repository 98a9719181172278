//! A node's first steps: its own record made (key pair, TLS key) or read, the operator's
//! flags applied, and a provisioning bundle imported and erased.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use coffer_core::Service;
use coffer_core::fleet::NodeSelf;
use coffer_crypto::SecretBytes;
use coffer_fleet::bundle::{Bundle, MAX_BUNDLE};
use coffer_fleet::pki::TlsKey;
use coffer_fleet::wire::Held;
use coffer_types::Kind;

use super::settings::NodeSettings;

/// The node's record, made on its first start, with the flags and any bundle applied.
pub(crate) async fn prepare(
    service: &Arc<Service>,
    settings: &NodeSettings,
) -> Result<NodeSelf, String> {
    let mut me = match service.fleet_self().await.map_err(|e| e.to_string())? {
        Some(me) => me,
        None => {
            let seed = SecretBytes::random(32).map_err(|e| e.to_string())?;
            let tls = TlsKey::generate().map_err(|e| e.to_string())?;
            tracing::info!(
                "this node made its fleet key pair (kept in its store, under its slots)"
            );
            let mut me = NodeSelf::default();
            me.seed = data_encoding::BASE64.encode(seed.expose_secret());
            me.tls_key = tls.to_pem();
            me
        }
    };
    if let Some(p) = &settings.provision {
        import(service, &mut me, &p.bundle, &p.key).await;
    }
    if !settings.hubs.is_empty() {
        me.hubs.clone_from(&settings.hubs);
    }
    if let Some(ca) = &settings.ca_pem {
        me.ca_pem.clone_from(ca);
    }
    if me.cert.is_none()
        && let Some(token) = &settings.token
    {
        me.token = token.expose_str().map(|t| t.trim().to_owned());
    }
    if me.ca_pem.is_empty() {
        return Err("the fleet node has no hub CA: give it with --hub-ca FILE".to_owned());
    }
    service
        .fleet_save_self(&me)
        .await
        .map_err(|e| e.to_string())?;
    Ok(me)
}

/// Imports a provisioning bundle into the store (each secret bound to this node's slots
/// like any other), keeps its join credential, then erases the bundle. A bundle that does
/// not open is left where it is, and said so.
async fn import(service: &Service, me: &mut NodeSelf, bundle: &Path, key: &SecretBytes) {
    let bytes = match read_limited(bundle) {
        Ok(Some(b)) => b,
        Ok(None) => {
            tracing::info!(bundle = %bundle.display(), "no provisioning bundle to import (already imported and erased)");
            return;
        }
        Err(e) => {
            tracing::error!(bundle = %bundle.display(), error = %e, "the provisioning bundle cannot be read");
            return;
        }
    };
    let opened = match Bundle::open(&bytes, key) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(bundle = %bundle.display(), error = %e, "the provisioning bundle does not open with its key; left in place");
            return;
        }
    };
    let mut imported = 0usize;
    for s in &opened.secrets {
        let (Ok(value), Ok(kind)) = (SecretBytes::from_base64(&s.value), s.kind.parse::<Kind>())
        else {
            tracing::error!("a secret in the bundle does not parse; skipped");
            continue;
        };
        let held = Held {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            version: s.version,
        };
        match service.fleet_put(held, kind, value).await {
            Ok(()) => {}
            Err(e) if e.code() == coffer_types::ErrorCode::Conflict => {
                tracing::error!(error = %e, "a secret in the bundle is not written over a local one; skipped");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "a secret in the bundle could not be written; the bundle is kept");
                return;
            }
        }
        imported += 1;
    }
    if me.cert.is_none()
        && let Some(join) = &opened.join
    {
        me.token = Some(join.token.clone());
        if me.ca_pem.is_empty() {
            me.ca_pem.clone_from(&join.ca_pem);
        }
        if me.hubs.is_empty() {
            me.hubs.clone_from(&join.hubs);
        }
    }
    me.tags.clone_from(&opened.tags);
    me.since = opened.revision;
    if let Err(e) = service.fleet_save_self(me).await {
        tracing::error!(error = %e, "the bundle's join credential could not be kept; the bundle is kept");
        return;
    }
    match erase(bundle) {
        Ok(()) => {
            tracing::info!(bundle = %bundle.display(), secrets = imported, "the provisioning bundle was imported and erased")
        }
        Err(e) => {
            tracing::error!(bundle = %bundle.display(), error = %e, "the provisioning bundle was imported but could not be erased; remove it")
        }
    }
}

fn read_limited(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_BUNDLE {
        return Err(std::io::Error::other("the bundle is over 256 MiB"));
    }
    Ok(Some(bytes))
}

/// Overwrites the file with zeros, syncs it, removes it and syncs its folder.
fn erase(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // The file itself, never what a link points at.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    let len = file.metadata()?.len();
    let zeros = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
