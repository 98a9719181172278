//! Sealing a node key to a PCR policy, and unsealing it (../shared/notes/tpm.md, "Sealing a
//! key to PCRs").
//!
//! The sealed object's policy is PolicyPCR then PolicyAuthValue, and its authValue is derived
//! from coffer's [`TpmAuth`](crate::TpmAuth): the PCRs alone do not unseal it, so whoever can
//! open the TPM on a machine booted as expected still needs a secret only the daemon's user
//! reads. Sealing and unsealing run in sessions salted to the storage key with AES-128-CFB
//! parameter encryption, so the node key never crosses the bus in the clear.
//!
//! The parent is an ECC P-256 storage key made fresh from the owner hierarchy's seed each time
//! (the same template always gives the same key, so only the sealed object is persisted; ECC,
//! because RSA primary generation takes seconds on some real TPMs). The sealed object is a
//! keyed-hash object whose only authorization is the PCR policy: `user_with_auth` is off, so
//! a password session cannot unseal it when the PCRs differ (tpm.md: with it on, the policy
//! is silently bypassed). Every object and session is flushed on every path, errors included:
//! swtpm has no resource manager and holds at most three loaded objects.

use coffer_crypto::SecretBytes;
use tss_esapi::Context;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, Digest, KeyedHashScheme, Private, Public, PublicBuilder, PublicKeyedHashParameters,
    SensitiveData,
};
use tss_esapi::traits::{Marshall, UnMarshall};

use crate::device::{AuthFor, Encrypt, encrypting, flush, flush_session, primary, start_salted};
use crate::error::TssContext;
use crate::{PcrPolicy, Tpm, TpmError};

/// Length of a node key.
pub const NODE_KEY_LEN: usize = 32;

/// A node key sealed by a TPM: the object's public and private parts, as the TPM marshals them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// TPM2B_PUBLIC, marshalled.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE's bytes (encrypted by the TPM under the parent).
    pub private: Vec<u8>,
}

fn sealed_template(policy: Digest, user_with_auth: bool) -> Result<Public, TpmError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_admin_with_policy(true)
        .with_user_with_auth(user_with_auth)
        .build()
        .during("describe the sealed object")?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(policy)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .during("describe the sealed object")
}

/// Runs `f` with a policy (or trial) session bound to `policy`'s PCRs and to the object's
/// authValue (PolicyAuthValue); flushes the session. A policy session is salted to `salt`
/// and encrypts the response (the unsealed key).
fn with_pcr_session<T>(
    ctx: &mut Context,
    kind: SessionType,
    salt: Option<KeyHandle>,
    policy: &PcrPolicy,
    f: impl FnOnce(&mut Context, AuthSession) -> Result<T, TpmError>,
) -> Result<T, TpmError> {
    let selection = policy.selection()?;
    let session = start_salted(ctx, salt, kind)?;
    let result = PolicySession::try_from(session)
        .during("start a policy session")
        .and_then(|ps| {
            // An empty digest binds the PCRs' current values.
            ctx.policy_pcr(ps, Digest::default(), selection)
                .during("bind the PCR policy")?;
            ctx.policy_auth_value(ps)
                .during("bind the sealed key's authorization")
        })
        .and_then(|()| {
            if salt.is_some() {
                encrypting(
                    ctx,
                    session,
                    Encrypt {
                        command: false,
                        response: true,
                    },
                )?;
            }
            f(ctx, session)
        });
    flush_session(ctx, session);
    result
}

pub(crate) fn seal_on(
    ctx: &mut Context,
    auth: Auth,
    key: &SecretBytes,
    policy: &PcrPolicy,
    user_with_auth: bool,
) -> Result<SealedKey, TpmError> {
    if key.len() != NODE_KEY_LEN {
        return Err(TpmError::refused(
            "seal a node key",
            "a node key is 32 bytes",
        ));
    }
    let digest = with_pcr_session(ctx, SessionType::Trial, None, policy, |ctx, session| {
        let ps = PolicySession::try_from(session).during("compute the PCR policy")?;
        ctx.policy_get_digest(ps).during("compute the PCR policy")
    })?;
    let public = sealed_template(digest, user_with_auth)?;
    let sensitive =
        SensitiveData::try_from(key.expose_secret().to_vec()).during("seal a node key")?;
    let parent = primary(ctx)?;
    // The sensitive part (the key and its authValue) goes to the TPM encrypted, in a session
    // salted to the parent.
    let created = start_salted(ctx, Some(parent), SessionType::Hmac).and_then(|session| {
        let created = encrypting(
            ctx,
            session,
            Encrypt {
                command: true,
                response: false,
            },
        )
        .and_then(|()| {
            ctx.execute_with_session(Some(session), |c| {
                c.create(parent, public, Some(auth), Some(sensitive), None, None)
            })
            .during("seal a node key")
        });
        flush_session(ctx, session);
        created
    });
    flush(ctx, parent.into());
    let created = created?;
    Ok(SealedKey {
        public: created
            .out_public
            .marshall()
            .during("marshal the sealed object")?,
        private: created.out_private.value().to_vec(),
    })
}

pub(crate) fn load(
    ctx: &mut Context,
    sealed: &SealedKey,
) -> Result<(KeyHandle, KeyHandle), TpmError> {
    let public = Public::unmarshall(&sealed.public).map_err(|_| {
        TpmError::refused("load a sealed node key", "the sealed object is malformed")
    })?;
    let private = Private::try_from(sealed.private.clone()).map_err(|_| {
        TpmError::refused("load a sealed node key", "the sealed object is malformed")
    })?;
    let parent = primary(ctx)?;
    match ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.load(parent, private, public)
        })
        .during("load the sealed node key")
    {
        Ok(object) => Ok((parent, object)),
        Err(e) => {
            flush(ctx, parent.into());
            Err(e)
        }
    }
}

pub(crate) fn unseal_on(
    ctx: &mut Context,
    auth: Auth,
    sealed: &SealedKey,
    policy: &PcrPolicy,
) -> Result<SecretBytes, TpmError> {
    let (parent, object) = load(ctx, sealed)?;
    let result = ctx
        .tr_set_auth(object.into(), auth)
        .during("set the sealed key's authorization")
        .and_then(|()| {
            with_pcr_session(
                ctx,
                SessionType::Policy,
                Some(parent),
                policy,
                |ctx, session| {
                    ctx.execute_with_session(Some(session), |c| c.unseal(object.into()))
                        .during("unseal the node key")
                },
            )
        })
        .map(|data| SecretBytes::from_vec(data.value().to_vec()));
    flush(ctx, object.into());
    flush(ctx, parent.into());
    result
}

impl Tpm {
    /// Seals `key` (32 bytes) so that only this TPM, with `policy`'s PCRs at their current
    /// values, can unseal it.
    pub fn seal(&self, key: &SecretBytes, policy: &PcrPolicy) -> Result<SealedKey, TpmError> {
        let key = key.clone();
        let policy = policy.clone();
        self.run(move |s| {
            let auth = s.auth.derive(AuthFor::SealedKey)?;
            seal_on(&mut s.ctx, auth, &key, &policy, false)
        })
    }

    /// Unseals a node key; [`TpmRc::POLICY_FAIL`](crate::TpmRc::POLICY_FAIL) when the PCRs
    /// changed.
    pub fn unseal(&self, sealed: &SealedKey, policy: &PcrPolicy) -> Result<SecretBytes, TpmError> {
        let sealed = sealed.clone();
        let policy = policy.clone();
        self.run(move |s| {
            let auth = s.auth.derive(AuthFor::SealedKey)?;
            unseal_on(&mut s.ctx, auth, &sealed, &policy)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Swtpm;
    use crate::{TpmAuth, TpmRc};
    use tss_esapi::handles::PcrHandle;
    use tss_esapi::structures::DigestValues;

    fn extend_pcr7(tpm: &Tpm) {
        tpm.run(|s| {
            let mut values = DigestValues::new();
            values.set(
                HashingAlgorithm::Sha256,
                Digest::try_from(vec![0x42u8; 32]).during("make a digest")?,
            );
            s.ctx
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.pcr_extend(PcrHandle::Pcr7, values)
                })
                .during("extend PCR 7")
        })
        .unwrap();
    }

    #[test]
    fn seals_and_unseals_until_the_pcrs_change() {
        let swtpm = Swtpm::start();
        let tpm = Tpm::open(&swtpm.tcti(), crate::fixture::auth()).unwrap();
        let key = SecretBytes::random(32).unwrap();
        let policy = PcrPolicy::default();
        let sealed = tpm.seal(&key, &policy).unwrap();
        assert!(!sealed.private.windows(32).any(|w| w == key.expose_secret()));
        assert!(tpm.unseal(&sealed, &policy).unwrap().ct_eq(&key));
        // Again: every handle was flushed (swtpm holds only three objects).
        for _ in 0..5 {
            assert!(tpm.unseal(&sealed, &policy).unwrap().ct_eq(&key));
        }
        extend_pcr7(&tpm);
        let err = tpm.unseal(&sealed, &policy).unwrap_err();
        assert_eq!(err.rc(), Some(TpmRc::POLICY_FAIL), "{err}");
        // Still usable afterwards: the failed attempt flushed its handles too.
        let again = tpm.seal(&key, &policy).unwrap();
        assert!(tpm.unseal(&again, &policy).unwrap().ct_eq(&key));
        // A policy over PCRs that did not change still unseals.
        let other: PcrPolicy = "sha256:0,1".parse().unwrap();
        let sealed_other = tpm.seal(&key, &other).unwrap();
        extend_pcr7(&tpm);
        assert!(tpm.unseal(&sealed_other, &other).unwrap().ct_eq(&key));
    }

    #[test]
    fn another_tpm_cannot_unseal() {
        let (a, b) = (Swtpm::start(), Swtpm::start());
        let (ta, tb) = (
            Tpm::open(&a.tcti(), crate::fixture::auth()).unwrap(),
            Tpm::open(&b.tcti(), crate::fixture::auth()).unwrap(),
        );
        let key = SecretBytes::random(32).unwrap();
        let sealed = ta.seal(&key, &PcrPolicy::default()).unwrap();
        let err = tb.unseal(&sealed, &PcrPolicy::default()).unwrap_err();
        assert!(err.rc().is_some(), "the other TPM itself refuses: {err}");
        assert!(ta.unseal(&sealed, &PcrPolicy::default()).is_ok());
    }

    /// What `user_with_auth` would open: with it on, a plain password session unseals after
    /// the PCRs changed; coffer's objects have it off, so the same attempt fails.
    #[test]
    fn a_password_session_cannot_unseal_coffers_node_key() {
        let swtpm = Swtpm::start();
        let tpm = Tpm::open(&swtpm.tcti(), crate::fixture::auth()).unwrap();
        let key = SecretBytes::random(32).unwrap();
        let policy = PcrPolicy::default();
        let (ours, bypassable) = {
            let (k1, k2, p1, p2) = (key.clone(), key.clone(), policy.clone(), policy.clone());
            (
                tpm.run(move |s| {
                    let auth = s.auth.derive(AuthFor::SealedKey)?;
                    seal_on(&mut s.ctx, auth, &k1, &p1, false)
                })
                .unwrap(),
                tpm.run(move |s| seal_on(&mut s.ctx, Auth::default(), &k2, &p2, true))
                    .unwrap(),
            )
        };
        extend_pcr7(&tpm);
        let with_password = |sealed: SealedKey| {
            tpm.run(move |s| {
                let (parent, object) = load(&mut s.ctx, &sealed)?;
                // Even with the right authValue in hand, a password session is refused.
                let auth = s.auth.derive(AuthFor::SealedKey)?;
                let r = s
                    .ctx
                    .tr_set_auth(object.into(), auth)
                    .during("set the authValue")
                    .and_then(|()| {
                        s.ctx
                            .execute_with_session(Some(AuthSession::Password), |c| {
                                c.unseal(object.into())
                            })
                            .during("unseal with a password session")
                    });
                flush(&mut s.ctx, object.into());
                flush(&mut s.ctx, parent.into());
                r.map(|d| d.value().to_vec())
            })
        };
        // The bypassable object has an empty authValue; setting coffer's on the handle makes
        // the password wrong, so it is sealed again to be opened the way the flag allows.
        let bypass = tpm
            .run(move |s| {
                let (parent, object) = load(&mut s.ctx, &bypassable)?;
                let r = s
                    .ctx
                    .execute_with_session(Some(AuthSession::Password), |c| c.unseal(object.into()))
                    .during("unseal with a password session");
                flush(&mut s.ctx, object.into());
                flush(&mut s.ctx, parent.into());
                r.map(|d| d.value().to_vec())
            })
            .expect("the flag on is a bypass");
        assert_eq!(bypass, key.expose_secret());
        let refused = with_password(ours).expect_err("coffer's node key must not unseal");
        let _ = &with_password;
        assert!(refused.rc().is_some(), "the TPM itself refuses: {refused}");
        assert_ne!(refused.rc(), Some(TpmRc(0)));
    }

    /// Item 7 of issue 12: a third party that can open the TPM, holds the sealed blob (from a
    /// copied database, or read out of NV) and sits on a machine whose PCRs are as sealed to,
    /// but lacks coffer's authorization, cannot unseal: not with the PCR policy alone (the
    /// policy digest differs), not with PolicyAuthValue and a guessed (empty) authValue, not
    /// with another coffer's authorization. coffer's own path still unseals.
    #[test]
    fn the_pcr_policy_alone_does_not_unseal_without_coffers_authorization() {
        let swtpm = Swtpm::start();
        let tpm = Tpm::open(&swtpm.tcti(), crate::fixture::auth()).unwrap();
        let key = SecretBytes::random(32).unwrap();
        let policy = PcrPolicy::default();
        let sealed = tpm.seal(&key, &policy).unwrap();
        assert!(tpm.unseal(&sealed, &policy).unwrap().ct_eq(&key));

        // PCR policy alone, as before this change: the object's policy wants more.
        let (blob, pcrs) = (sealed.clone(), policy.clone());
        let pcr_only = tpm
            .run(move |s| {
                let (parent, object) = load(&mut s.ctx, &blob)?;
                let selection = pcrs.selection()?;
                let session = start_salted(&mut s.ctx, None, SessionType::Policy)?;
                let r = PolicySession::try_from(session)
                    .during("policy session")
                    .and_then(|ps| {
                        s.ctx
                            .policy_pcr(ps, Digest::default(), selection)
                            .during("bind the PCR policy")
                    })
                    .and_then(|()| {
                        s.ctx
                            .execute_with_session(Some(session), |c| c.unseal(object.into()))
                            .during("unseal with the PCR policy alone")
                    });
                flush_session(&mut s.ctx, session);
                flush(&mut s.ctx, object.into());
                flush(&mut s.ctx, parent.into());
                r.map(|d| d.value().to_vec())
            })
            .expect_err("the PCR policy alone must not unseal");
        assert_eq!(pcr_only.rc(), Some(TpmRc::POLICY_FAIL), "{pcr_only}");

        // The full policy with an empty or foreign authValue.
        for guess in [Auth::default(), Auth::try_from(vec![7u8; 32]).unwrap()] {
            let (blob, pcrs) = (sealed.clone(), policy.clone());
            let err = tpm
                .run(move |s| unseal_on(&mut s.ctx, guess, &blob, &pcrs))
                .expect_err("a wrong authValue must not unseal");
            assert!(err.rc().is_some(), "the TPM itself refuses: {err}");
        }
        // Another coffer's authorization (swtpm serves one connection at a time).
        drop(tpm);
        let stranger = Tpm::open(&swtpm.tcti(), TpmAuth::generate().unwrap()).unwrap();
        let err = stranger.unseal(&sealed, &policy).unwrap_err();
        assert!(err.rc().is_some(), "the TPM itself refuses: {err}");
        drop(stranger);
        // And coffer still does, after all those attempts (no lockout: the object is no_da).
        let tpm = Tpm::open(&swtpm.tcti(), crate::fixture::auth()).unwrap();
        assert!(tpm.unseal(&sealed, &policy).unwrap().ct_eq(&key));
    }
}
