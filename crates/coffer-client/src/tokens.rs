//! Tokens for applications and services: made, listed, revoked and looked up by accessor. A
//! token itself is shown once, when it is made; the daemon keeps only its record.

use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_types::reply::TokenRecord;

use crate::ClientError;
use crate::request::Client;

/// What a new token carries.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// Its policies (each must exist).
    pub policies: &'a [String],
    /// Its time to live.
    pub ttl: Duration,
    /// A namespace it is confined to (with the namespaces under it).
    pub namespace: Option<&'a str>,
    /// A label.
    pub display_name: Option<&'a str>,
}

/// A token just made.
#[derive(Debug)]
pub struct CreatedToken {
    /// The token: shown this once.
    pub token: SecretBytes,
    /// Its record (accessor, policies, expiry).
    pub record: TokenRecord,
}

impl Client {
    /// Makes a token.
    pub fn create_token(&self, t: &TokenRequest<'_>) -> Result<CreatedToken, ClientError> {
        let request = self
            .request("token_create")
            .json("policies", &t.policies)
            .number("ttl", t.ttl.as_secs())
            .opt("namespace", t.namespace)
            .opt("display_name", t.display_name)
            .finish();
        let mut reply = self.call(&request)?;
        Ok(CreatedToken {
            token: reply.token.take().ok_or(ClientError::Protocol(
                "a token_create reply without a token",
            ))?,
            record: reply.token_info.take().ok_or(ClientError::Protocol(
                "a token_create reply without token_info",
            ))?,
        })
    }

    /// Every live token's record (never the tokens).
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, ClientError> {
        Ok(self
            .call(&self.request("token_list").finish())?
            .tokens
            .unwrap_or_default())
    }

    /// Revokes a token, and the tokens it made.
    pub fn revoke_token(&self, accessor: &str) -> Result<(), ClientError> {
        let request = self
            .request("token_revoke")
            .field("accessor", accessor)
            .finish();
        self.call(&request).map(drop)
    }

    /// A token's record: by accessor, or (`None`) the client's own token.
    pub fn lookup_token(&self, accessor: Option<&str>) -> Result<TokenRecord, ClientError> {
        let request = self
            .request("token_lookup")
            .opt("accessor", accessor)
            .finish();
        self.call(&request)?.token_info.ok_or(ClientError::Protocol(
            "a token_lookup reply without token_info",
        ))
    }
}
