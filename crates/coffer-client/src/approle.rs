//! AppRole, the machine login, on the socket (`approle`, `approle_login`): roles, their
//! role-ids and secret-ids, and the login. A secret-id and a login's token are shown once,
//! when they are made; the daemon keeps only their hashes.

use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_types::reply::TokenRecord;

use crate::ClientError;
use crate::request::Client;

/// What an AppRole request answers: each verb fills the fields it answers. Roles and
/// secret-id records hold no secret and come as JSON (docs/protocol.md, `approle`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AppRoleReply {
    /// A role's settings (`role_get`).
    pub role: Option<serde_json::Value>,
    /// Role names, or a role's secret-id accessors.
    pub keys: Option<Vec<String>>,
    /// A role's role-id.
    pub role_id: Option<String>,
    /// A secret-id just made (shown once).
    pub secret_id: Option<SecretBytes>,
    /// A secret-id's record.
    pub secret_id_info: Option<serde_json::Value>,
    /// A login's token (shown once).
    pub token: Option<SecretBytes>,
    /// A login's token's record.
    pub token_info: Option<TokenRecord>,
    /// The role logged in with.
    pub role_name: Option<String>,
}

/// A role's settings as written (`None`: keep what it has, or the default).
#[derive(Debug, Clone, Default)]
pub struct RoleSettings<'a> {
    /// The policies its tokens carry.
    pub policies: Option<&'a [String]>,
    /// How long a secret-id lives (zero: until destroyed).
    pub secret_id_ttl: Option<Duration>,
    /// How many logins a secret-id allows (0: any number).
    pub secret_id_num_uses: Option<u64>,
    /// Its tokens' time to live.
    pub token_ttl: Option<Duration>,
    /// Its tokens' max time to live.
    pub token_max_ttl: Option<Duration>,
}

/// The keys of a list reply; `not_found` naming `empty` (what the list is of) is an empty
/// list, any other (a missing role) stays an error.
fn keys(reply: Result<AppRoleReply, ClientError>, empty: &str) -> Result<Vec<String>, ClientError> {
    match reply {
        Ok(r) => Ok(r.keys.unwrap_or_default()),
        Err(ClientError::Refused { code, message, .. })
            if code == coffer_types::ErrorCode::NotFound && message.ends_with(empty) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

impl Client {
    fn approle(&self, verb: &str, role: Option<&str>) -> crate::RequestBuilder {
        self.request("approle")
            .field("verb", verb)
            .opt("name", role)
    }

    fn send_approle(&self, b: crate::RequestBuilder) -> Result<AppRoleReply, ClientError> {
        self.call_as(&b.finish())
    }

    /// Makes or changes a role.
    pub fn approle_put(&self, role: &str, s: &RoleSettings<'_>) -> Result<(), ClientError> {
        let mut b = self
            .approle("role_put", Some(role))
            .opt_number("secret_id_ttl", s.secret_id_ttl.map(|d| d.as_secs()))
            .opt_number("num_uses", s.secret_id_num_uses)
            .opt_number("ttl", s.token_ttl.map(|d| d.as_secs()))
            .opt_number("max_ttl", s.token_max_ttl.map(|d| d.as_secs()));
        if let Some(p) = s.policies {
            b = b.json("policies", &p);
        }
        self.send_approle(b).map(drop)
    }

    /// A role's settings.
    pub fn approle_get(&self, role: &str) -> Result<serde_json::Value, ClientError> {
        self.send_approle(self.approle("role_get", Some(role)))?
            .role
            .ok_or(ClientError::Protocol("a role_get reply without a role"))
    }

    /// Every role's name (none: an empty list; the daemon answers `not_found`, as Vault
    /// answers an empty LIST with 404).
    pub fn approle_list(&self) -> Result<Vec<String>, ClientError> {
        keys(self.send_approle(self.approle("role_list", None)), "role")
    }

    /// Deletes a role and its secret-ids.
    pub fn approle_delete(&self, role: &str) -> Result<(), ClientError> {
        self.send_approle(self.approle("role_delete", Some(role)))
            .map(drop)
    }

    /// A role's role-id.
    pub fn approle_role_id(&self, role: &str) -> Result<String, ClientError> {
        self.send_approle(self.approle("role_id", Some(role)))?
            .role_id
            .ok_or(ClientError::Protocol("a role_id reply without a role_id"))
    }

    /// Makes a secret-id for a role: the secret-id (shown once) and its record.
    pub fn approle_secret_id(
        &self,
        role: &str,
        ttl: Option<Duration>,
        num_uses: Option<u64>,
    ) -> Result<(SecretBytes, serde_json::Value), ClientError> {
        let b = self
            .approle("secret_id", Some(role))
            .opt_number("ttl", ttl.map(|d| d.as_secs()))
            .opt_number("num_uses", num_uses);
        let mut reply = self.send_approle(b)?;
        Ok((
            reply.secret_id.take().ok_or(ClientError::Protocol(
                "a secret_id reply without a secret_id",
            ))?,
            reply.secret_id_info.take().unwrap_or_default(),
        ))
    }

    /// The accessors of a role's live secret-ids (none: an empty list).
    pub fn approle_secret_ids(&self, role: &str) -> Result<Vec<String>, ClientError> {
        keys(
            self.send_approle(self.approle("secret_id_list", Some(role))),
            "secret-id",
        )
    }

    /// Destroys a secret-id by its accessor.
    pub fn approle_secret_id_destroy(&self, role: &str, accessor: &str) -> Result<(), ClientError> {
        self.send_approle(
            self.approle("secret_id_destroy", Some(role))
                .field("accessor", accessor),
        )
        .map(drop)
    }

    /// Logs in: a token carrying the role's policies (shown once) and its record.
    pub fn approle_login(
        &self,
        role_id: &str,
        secret_id: &SecretBytes,
    ) -> Result<(SecretBytes, TokenRecord), ClientError> {
        let b = self
            .request("approle_login")
            .field("role_id", role_id)
            .secret("secret_id", secret_id);
        let mut reply = self.send_approle(b)?;
        Ok((
            reply
                .token
                .take()
                .ok_or(ClientError::Protocol("a login reply without a token"))?,
            reply
                .token_info
                .take()
                .ok_or(ClientError::Protocol("a login reply without token_info"))?,
        ))
    }
}
