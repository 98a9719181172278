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
    /// Its explicit max TTL, fixed now: no renewal goes past it (`None`: its creator's, or
    /// ten years).
    pub max_ttl: Option<Duration>,
    /// Make it without a parent, so revoking the token that made it leaves it alone
    /// (needs `sudo` on `sys/token`).
    pub orphan: bool,
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
        let mut request = self
            .request("token_create")
            .json("policies", &t.policies)
            .number("ttl", t.ttl.as_secs())
            .opt("namespace", t.namespace)
            .opt("display_name", t.display_name)
            .opt_number("max_ttl", t.max_ttl.map(|d| d.as_secs()));
        if t.orphan {
            request = request.flag("orphan", true);
        }
        let request = request.finish();
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

    /// Revokes a token, and every token descended from it (the tokens it made, and theirs).
    /// Answers the accessors revoked, the token's first.
    pub fn revoke_token(&self, accessor: &str) -> Result<Vec<String>, ClientError> {
        let request = self
            .request("token_revoke")
            .field("accessor", accessor)
            .finish();
        Ok(self.call(&request)?.revoked_tokens.unwrap_or_default())
    }

    /// Renews the client's own token: its expiry becomes now plus its time to live, never
    /// past its max expiry. Answers its record.
    pub fn renew_token(&self) -> Result<TokenRecord, ClientError> {
        self.call(&self.request("token_renew").finish())?
            .token_info
            .ok_or(ClientError::Protocol(
                "a token_renew reply without token_info",
            ))
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
