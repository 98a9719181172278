//! Operating the daemon: its status, sealing and unsealing, policies and the subjects bound to
//! them, and the audit log. Each needs `sudo` on its `sys/` area except `status`
//! (docs/protocol.md, Capabilities).

use coffer_crypto::SecretBytes;
use coffer_types::reply::{AuditReport, PolicyListing, PolicyView, RuleText, StatusReport};
use coffer_types::wire::UnsealWith;

use crate::ClientError;
use crate::request::Client;

/// The hashes under which a name and a namespace appear in the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditHashes {
    /// The name's, when one was asked for.
    pub name: Option<String>,
    /// The namespace's, when one was asked for.
    pub namespace: Option<String>,
}

impl Client {
    /// The daemon's status report (no value, no name).
    pub fn status(&self) -> Result<StatusReport, ClientError> {
        self.call(&self.request("status").finish())?
            .status
            .ok_or(ClientError::Protocol("a status reply without a status"))
    }

    /// Seals the store: keys forgotten, cache flushed.
    pub fn seal(&self) -> Result<(), ClientError> {
        self.call(&self.request("seal").finish()).map(drop)
    }

    /// Unseals the store through a slot, with its key where it takes one.
    pub fn unseal(&self, with: UnsealWith, key: Option<&SecretBytes>) -> Result<(), ClientError> {
        let mut b = self.request("unseal").field("slot", with.as_str());
        if let Some(key) = key {
            b = b.secret("key", key);
        }
        self.call(&b.finish()).map(drop)
    }

    /// Puts a policy: its rules replace any it had.
    pub fn put_policy(&self, name: &str, rules: &[RuleText]) -> Result<(), ClientError> {
        let request = self
            .request("policy_put")
            .field("policy", name)
            .json("rules", &rules)
            .finish();
        self.call(&request).map(drop)
    }

    /// Puts a Vault HCL policy, kept as written.
    pub fn put_hcl_policy(&self, name: &str, hcl: &str) -> Result<(), ClientError> {
        let request = self
            .request("policy_put")
            .field("policy", name)
            .field("hcl", hcl)
            .finish();
        self.call(&request).map(drop)
    }

    /// One policy.
    pub fn policy(&self, name: &str) -> Result<PolicyView, ClientError> {
        self.call(&self.request("policy_get").field("policy", name).finish())?
            .policy
            .ok_or(ClientError::Protocol("a policy_get reply without a policy"))
    }

    /// Every policy and every binding.
    pub fn policies(&self) -> Result<PolicyListing, ClientError> {
        let reply = self.call(&self.request("policy_list").finish())?;
        Ok(PolicyListing {
            policies: reply.policies.unwrap_or_default(),
            subjects: reply.subjects.unwrap_or_default(),
        })
    }

    /// Deletes a run-time policy; bindings to it go too.
    pub fn delete_policy(&self, name: &str) -> Result<(), ClientError> {
        self.call(&self.request("policy_delete").field("policy", name).finish())
            .map(drop)
    }

    /// Binds a subject (`uid:N`, `gid:N`, `user:NAME`, `token:ACCESSOR`, `unit:NAME`) to
    /// policies; none unbinds it.
    pub fn bind(&self, subject: &str, policies: &[String]) -> Result<(), ClientError> {
        let request = self
            .request("subject_set")
            .field("subject", subject)
            .json("policies", &policies)
            .finish();
        self.call(&request).map(drop)
    }

    /// The audit log's hashes of a name and/or a namespace.
    pub fn audit_hash(
        &self,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<AuditHashes, ClientError> {
        let request = self
            .request("audit_hash")
            .opt("name", name)
            .opt("namespace", namespace)
            .finish();
        let reply = self.call(&request)?;
        Ok(AuditHashes {
            name: reply.name_hash,
            namespace: reply.namespace_hash,
        })
    }

    /// Acknowledges the gap the daemon's audit check found at unseal (needs `sudo` on
    /// `sys/audit`): answers the seq of the gap record written, `None` when there was none.
    pub fn audit_acknowledge(&self) -> Result<Option<u64>, ClientError> {
        Ok(self
            .call(&self.request("audit_acknowledge").finish())?
            .gap_seq)
    }

    /// The daemon's verification of its audit log.
    pub fn audit_verify(&self) -> Result<AuditReport, ClientError> {
        self.call(&self.request("audit_verify").finish())?
            .audit
            .ok_or(ClientError::Protocol("an audit_verify reply without audit"))
    }
}
