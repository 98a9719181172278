//! A blocking client for coffer's local socket protocol (DESIGN.md, Local socket protocol).
//!
//! One request per connection, as the device daemon's clients do: connect, write one JSON
//! object, read the reply to the end of stream. Values travel in `SecretBytes`; the request
//! and reply buffers are sized before a value goes in and zeroized after.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_types::wire::{SlotSummary, UnsealWith, json_string_len};
use coffer_types::{
    DigestEncoding, ErrorCode, GeneratorSpec, HmacAlgorithm, Kind, NvIndex, SecretMeta,
    SecretSummary, Version, VersionInfo,
};
use zeroize::{Zeroize, Zeroizing};

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach coffer at {} (is `coffer serve` running? set --socket or COFFER_SOCKET)", .path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The connection failed midway.
    #[error("talking to coffer failed")]
    Io(#[from] io::Error),
    /// The reply was not what the protocol promises.
    #[error("coffer's reply was not understood: {0}")]
    Protocol(&'static str),
    /// The daemon refused the request.
    #[error("{message}")]
    Refused {
        /// The stable code.
        code: ErrorCode,
        /// The daemon's message.
        message: String,
        /// A TPM return code, where one applies.
        rc: Option<String>,
    },
}

impl ClientError {
    /// The stable code, for exit statuses.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused { code, .. } => *code,
            Self::Connect { .. } => ErrorCode::StoreUnavailable,
            _ => ErrorCode::Internal,
        }
    }
}

/// A reply as the protocol shapes it.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct Response {
    /// `true` on success.
    pub ok: bool,
    /// A text value.
    pub value: Option<SecretBytes>,
    /// A binary value, base64 (decoded by [`Response::take_value`]).
    pub value_b64: Option<SecretBytes>,
    /// The index `set` answers.
    pub index: Option<String>,
    /// The version a write made.
    pub version: Option<u32>,
    /// The status report.
    pub status: Option<serde_json::Value>,
    /// A secret's metadata.
    pub meta: Option<SecretMeta>,
    /// A version history.
    pub versions: Option<Vec<VersionInfo>>,
    /// The versions `destroy` erased.
    pub destroyed: Option<Vec<u32>>,
    /// A page of names.
    pub names: Option<Vec<String>>,
    /// A page of secrets with metadata.
    pub secrets: Option<Vec<SecretSummary>>,
    /// Revoked secrets with their history.
    pub revoked: Option<Vec<SecretMeta>>,
    /// The cursor for the next page.
    pub next: Option<String>,
    /// An HMAC digest.
    pub digest: Option<String>,
    /// A basic-auth header value.
    pub header: Option<SecretBytes>,
    /// The namespaces.
    pub namespaces: Option<Vec<String>>,
    /// The key slots.
    pub slots: Option<Vec<SlotSummary>>,
    /// The id of a slot just added.
    pub slot_id: Option<u32>,
    /// The recovery key of a recovery slot just added (shown once).
    pub recovery_key: Option<SecretBytes>,
    /// The slots resealed.
    pub resealed: Option<Vec<u32>>,
    /// A token just made (shown once).
    pub token: Option<SecretBytes>,
    /// A token's record.
    pub token_info: Option<serde_json::Value>,
    /// Token records.
    pub tokens: Option<Vec<serde_json::Value>>,
    /// One policy.
    pub policy: Option<serde_json::Value>,
    /// Every policy.
    pub policies: Option<Vec<serde_json::Value>>,
    /// Every binding.
    pub subjects: Option<Vec<serde_json::Value>>,
    /// The audit log's hash of a name.
    pub name_hash: Option<String>,
    /// The audit log's hash of a namespace.
    pub namespace_hash: Option<String>,
    /// The audit log's verification.
    pub audit: Option<serde_json::Value>,
    /// The error message.
    pub error: Option<String>,
    /// The error code.
    pub code: Option<ErrorCode>,
    /// A TPM return code.
    pub rc: Option<String>,
}

impl Response {
    fn into_result(self) -> Result<Self, ClientError> {
        if self.ok {
            return Ok(self);
        }
        Err(ClientError::Refused {
            code: self.code.unwrap_or(ErrorCode::Internal),
            message: self
                .error
                .clone()
                .unwrap_or_else(|| "coffer refused the request".to_owned()),
            rc: self.rc.clone(),
        })
    }

    /// The value of a `get`, decoding base64 when it came that way.
    pub fn take_value(&mut self) -> Result<SecretBytes, ClientError> {
        if let Some(v) = self.value.take() {
            return Ok(v);
        }
        let b64 = self
            .value_b64
            .take()
            .ok_or(ClientError::Protocol("a get reply without a value"))?;
        let text = b64
            .expose_str()
            .ok_or(ClientError::Protocol("value_b64 is not text"))?;
        SecretBytes::from_base64(text).map_err(|_| ClientError::Protocol("value_b64 is not base64"))
    }
}

/// Builds a request object field by field into a buffer that is zeroized on drop.
pub struct RequestBuilder {
    buf: Zeroizing<Vec<u8>>,
}

impl RequestBuilder {
    /// A request for `action`.
    pub fn new(action: &str) -> Self {
        let mut b = Self {
            buf: Zeroizing::new(Vec::with_capacity(128)),
        };
        b.buf.push(b'{');
        b.field("action", action)
    }

    fn key(&mut self, key: &str) {
        if self.buf.len() > 1 {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn reserve(&mut self, more: usize) {
        if self.buf.capacity() - self.buf.len() < more {
            let mut bigger = Vec::with_capacity(self.buf.len() + more + 64);
            bigger.extend_from_slice(&self.buf);
            self.buf.zeroize();
            *self.buf = bigger;
        }
    }

    /// A string field.
    pub fn field(mut self, key: &str, value: &str) -> Self {
        self.reserve(key.len() + json_string_len(value) + 4);
        self.key(key);
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.buf, value);
        self
    }

    /// An optional string field.
    pub fn opt(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    /// A number field.
    pub fn number(mut self, key: &str, n: u64) -> Self {
        self.reserve(key.len() + 24);
        self.key(key);
        self.buf.extend_from_slice(n.to_string().as_bytes());
        self
    }

    /// A field holding any JSON that is not secret.
    pub fn json(mut self, key: &str, value: &impl serde::Serialize) -> Self {
        // Serializing plain data (numbers, lists of numbers) cannot fail.
        let text = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        self.reserve(key.len() + text.len() + 4);
        self.key(key);
        self.buf.extend_from_slice(&text);
        self
    }

    /// An optional number field.
    pub fn opt_number(self, key: &str, n: Option<u64>) -> Self {
        match n {
            Some(n) => self.number(key, n),
            None => self,
        }
    }

    /// A boolean field.
    pub fn flag(mut self, key: &str, on: bool) -> Self {
        self.reserve(key.len() + 8);
        self.key(key);
        self.buf
            .extend_from_slice(if on { b"true" } else { b"false" });
        self
    }

    /// A secret as a text field (`value`, `key`), or as `value_b64` when it is not UTF-8.
    pub fn secret(mut self, key: &str, secret: &SecretBytes) -> Self {
        match secret.expose_str() {
            Some(text) => self.field(key, text),
            None => {
                let enc = &data_encoding::BASE64;
                let len = enc.encode_len(secret.len());
                self.reserve(len + 16);
                self.key(&format!("{key}_b64"));
                self.buf.push(b'"');
                let start = self.buf.len();
                self.buf.resize(start + len, 0);
                enc.encode_mut(secret.expose_secret(), &mut self.buf[start..]);
                self.buf.push(b'"');
                self
            }
        }
    }

    /// The finished request.
    pub fn finish(mut self) -> Zeroizing<Vec<u8>> {
        self.reserve(2);
        self.buf.push(b'}');
        self.buf
    }
}

/// Kind and metadata of a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The kind; `None` keeps the secret's kind.
    pub kind: Option<Kind>,
    /// A new description.
    pub description: Option<String>,
    /// A new version limit (0: unlimited).
    pub max_versions: Option<u32>,
}

/// What a write answered.
#[derive(Debug)]
pub struct Written {
    /// The secret's index.
    pub index: NvIndex,
    /// The version written.
    pub version: Option<Version>,
    /// The minted value, for `generate` and `rotate` with `generate`.
    pub value: Option<SecretBytes>,
}

/// Which names to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only names after this one.
    pub after: Option<String>,
    /// Most names in the page.
    pub limit: Option<u64>,
}

impl ListOptions {
    fn add(&self, b: RequestBuilder) -> RequestBuilder {
        b.opt("prefix", self.prefix.as_deref())
            .opt("after", self.after.as_deref())
            .opt_number("limit", self.limit)
    }
}

fn written(mut reply: Response) -> Result<Written, ClientError> {
    let index = reply
        .index
        .take()
        .ok_or(ClientError::Protocol("a write reply without an index"))?;
    let index = serde_json::from_value(serde_json::Value::String(index))
        .map_err(|_| ClientError::Protocol("a write reply with a malformed index"))?;
    Ok(Written {
        index,
        version: reply.version.and_then(Version::new),
        value: reply.value.take(),
    })
}

fn with_options(b: RequestBuilder, o: &WriteOptions) -> RequestBuilder {
    b.opt("kind", o.kind.map(Kind::as_str))
        .opt("description", o.description.as_deref())
        .opt_number("max_versions", o.max_versions.map(u64::from))
}

fn spec_fields(b: RequestBuilder, spec: Option<GeneratorSpec>) -> RequestBuilder {
    match spec {
        Some(s) => b
            .number("byte_len", s.byte_len() as u64)
            .field("encoding", s.encoding.as_str()),
        None => b,
    }
}

/// A client bound to one socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    token: Option<SecretBytes>,
}

impl Client {
    /// A client for the daemon at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: Duration::from_secs(60),
            token: None,
        }
    }

    /// Sends `token` with every request: they then run as the token.
    pub fn with_token(mut self, token: SecretBytes) -> Self {
        self.token = Some(token);
        self
    }

    /// A request with the client's token, if it has one.
    fn request(&self, action: &str) -> RequestBuilder {
        let b = RequestBuilder::new(action);
        match &self.token {
            Some(t) => b.secret("token", t),
            None => b,
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and reads the whole reply.
    pub fn call(&self, request: &[u8]) -> Result<Response, ClientError> {
        let mut stream =
            UnixStream::connect(&self.socket).map_err(|source| ClientError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        stream.write_all(request)?;
        let mut reply = Zeroizing::new(Vec::with_capacity(4096));
        let mut chunk = Zeroizing::new([0u8; 16 << 10]);
        loop {
            let n = stream.read(&mut chunk[..])?;
            if n == 0 {
                break;
            }
            if reply.capacity() - reply.len() < n {
                let mut bigger = Vec::with_capacity((reply.capacity() * 2).max(reply.len() + n));
                bigger.extend_from_slice(&reply);
                reply.zeroize();
                *reply = bigger;
            }
            reply.extend_from_slice(&chunk[..n]);
        }
        let response: Response = serde_json::from_slice(&reply)
            .map_err(|_| ClientError::Protocol("the reply is not a JSON object"))?;
        response.into_result()
    }

    /// Stores a value; answers the secret's index.
    pub fn set(
        &self,
        namespace: Option<&str>,
        name: &str,
        value: &SecretBytes,
        kind: Option<Kind>,
    ) -> Result<NvIndex, ClientError> {
        let options = WriteOptions {
            kind,
            ..WriteOptions::default()
        };
        self.set_with(namespace, name, value, &options)
            .map(|w| w.index)
    }

    /// Stores a value with kind and metadata.
    pub fn set_with(
        &self,
        namespace: Option<&str>,
        name: &str,
        value: &SecretBytes,
        options: &WriteOptions,
    ) -> Result<Written, ClientError> {
        let b = self
            .request("set")
            .field("name", name)
            .opt("namespace", namespace);
        let request = with_options(b, options).secret("value", value).finish();
        written(self.call(&request)?)
    }

    /// Mints a value for a new secret; the value is in the answer, and nowhere else.
    pub fn generate(
        &self,
        namespace: Option<&str>,
        name: &str,
        spec: Option<GeneratorSpec>,
        options: &WriteOptions,
    ) -> Result<Written, ClientError> {
        let b = self
            .request("generate")
            .field("name", name)
            .opt("namespace", namespace);
        let request = with_options(spec_fields(b, spec), options).finish();
        written(self.call(&request)?)
    }

    /// A new version of an existing secret: `value`, or a minted one when it is `None`.
    pub fn rotate(
        &self,
        namespace: Option<&str>,
        name: &str,
        value: Option<&SecretBytes>,
        spec: Option<GeneratorSpec>,
        options: &WriteOptions,
    ) -> Result<Written, ClientError> {
        let b = self
            .request("rotate")
            .field("name", name)
            .opt("namespace", namespace);
        let b = match value {
            Some(v) => with_options(b, options).secret("value", v),
            None => with_options(spec_fields(b.flag("generate", true), spec), options),
        };
        written(self.call(&b.finish())?)
    }

    /// Changes a description or version limit.
    pub fn describe(
        &self,
        namespace: Option<&str>,
        name: &str,
        description: Option<&str>,
        max_versions: Option<u32>,
    ) -> Result<(), ClientError> {
        let request = self
            .request("describe")
            .field("name", name)
            .opt("namespace", namespace)
            .opt("description", description)
            .opt_number("max_versions", max_versions.map(u64::from))
            .finish();
        self.call(&request).map(drop)
    }

    fn simple(
        &self,
        action: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Response, ClientError> {
        let request = self
            .request(action)
            .field("name", name)
            .opt("namespace", namespace)
            .finish();
        self.call(&request)
    }

    /// Soft-deletes a secret.
    pub fn revoke(&self, namespace: Option<&str>, name: &str) -> Result<(), ClientError> {
        self.simple("revoke", namespace, name).map(drop)
    }

    /// Erases versions' ciphertexts; answers the erased versions.
    pub fn destroy(
        &self,
        namespace: Option<&str>,
        name: &str,
        versions: &[Version],
    ) -> Result<Vec<u32>, ClientError> {
        let numbers: Vec<u32> = versions.iter().map(|v| v.get()).collect();
        let request = self
            .request("destroy")
            .field("name", name)
            .opt("namespace", namespace)
            .json("versions", &numbers)
            .finish();
        self.call(&request)?
            .destroyed
            .ok_or(ClientError::Protocol("a destroy reply without versions"))
    }

    /// A secret's metadata.
    pub fn meta(&self, namespace: Option<&str>, name: &str) -> Result<SecretMeta, ClientError> {
        self.simple("meta", namespace, name)?
            .meta
            .ok_or(ClientError::Protocol("a meta reply without metadata"))
    }

    /// A secret's version history.
    pub fn versions(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Vec<VersionInfo>, ClientError> {
        self.simple("versions", namespace, name)?
            .versions
            .ok_or(ClientError::Protocol("a versions reply without versions"))
    }

    /// A page of names, and the cursor for the next.
    pub fn list(
        &self,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<(Vec<String>, Option<String>), ClientError> {
        let b = self.request("list").opt("namespace", namespace);
        let reply = self.call(&options.add(b).finish())?;
        Ok((reply.names.unwrap_or_default(), reply.next))
    }

    /// A page of secrets with their metadata, and the cursor for the next.
    pub fn list_detail(
        &self,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<(Vec<SecretSummary>, Option<String>), ClientError> {
        let b = self
            .request("list")
            .opt("namespace", namespace)
            .flag("detail", true);
        let reply = self.call(&options.add(b).finish())?;
        Ok((reply.secrets.unwrap_or_default(), reply.next))
    }

    /// The revoked secrets of a namespace, with their history.
    pub fn list_revoked(&self, namespace: Option<&str>) -> Result<Vec<SecretMeta>, ClientError> {
        let request = self
            .request("list")
            .opt("namespace", namespace)
            .flag("revoked", true)
            .finish();
        Ok(self.call(&request)?.revoked.unwrap_or_default())
    }

    /// HMAC of `data` under a secret key; the key stays in the daemon.
    pub fn hmac(
        &self,
        namespace: Option<&str>,
        name: &str,
        algorithm: HmacAlgorithm,
        data: &[u8],
        encoding: DigestEncoding,
    ) -> Result<String, ClientError> {
        let b = self
            .request("hmac")
            .field("name", name)
            .opt("namespace", namespace)
            .field("algorithm", algorithm.as_str())
            .field("encoding", encoding.as_str());
        let b = match std::str::from_utf8(data) {
            Ok(text) => b.field("data", text),
            Err(_) => b.field("data_b64", &data_encoding::BASE64.encode(data)),
        };
        self.call(&b.finish())?
            .digest
            .ok_or(ClientError::Protocol("an hmac reply without a digest"))
    }

    /// The `Basic ...` header for `user` and a password secret.
    pub fn basic_auth(
        &self,
        namespace: Option<&str>,
        name: &str,
        user: &str,
    ) -> Result<SecretBytes, ClientError> {
        let request = self
            .request("basic_auth")
            .field("name", name)
            .opt("namespace", namespace)
            .field("user", user)
            .finish();
        self.call(&request)?
            .header
            .ok_or(ClientError::Protocol("a basic_auth reply without a header"))
    }

    /// The namespaces.
    pub fn namespaces(&self) -> Result<Vec<String>, ClientError> {
        Ok(self
            .call(&self.request("namespace_list").finish())?
            .namespaces
            .unwrap_or_default())
    }

    /// Creates a namespace.
    pub fn create_namespace(&self, namespace: &str) -> Result<(), ClientError> {
        let request = self
            .request("namespace_create")
            .field("namespace", namespace)
            .finish();
        self.call(&request).map(drop)
    }

    /// Reads a value.
    pub fn get(
        &self,
        namespace: Option<&str>,
        name: &str,
        version: Option<Version>,
    ) -> Result<SecretBytes, ClientError> {
        let mut b = self
            .request("get")
            .field("name", name)
            .opt("namespace", namespace);
        if let Some(v) = version {
            b = b.number("version", v.get().into());
        }
        self.call(&b.finish())?.take_value()
    }

    /// Deletes a secret.
    pub fn del(&self, namespace: Option<&str>, name: &str) -> Result<(), ClientError> {
        let request = self
            .request("del")
            .field("name", name)
            .opt("namespace", namespace)
            .finish();
        self.call(&request).map(drop)
    }

    /// The daemon's status report.
    pub fn status(&self) -> Result<serde_json::Value, ClientError> {
        self.call(&self.request("status").finish())?
            .status
            .ok_or(ClientError::Protocol("a status reply without a status"))
    }

    /// Seals the store.
    pub fn seal(&self) -> Result<(), ClientError> {
        self.call(&self.request("seal").finish()).map(drop)
    }

    /// Unseals the store through a slot.
    pub fn unseal(&self, with: UnsealWith, key: Option<&SecretBytes>) -> Result<(), ClientError> {
        let mut b = self.request("unseal").field("slot", with.as_str());
        if let Some(key) = key {
            b = b.secret("key", key);
        }
        self.call(&b.finish()).map(drop)
    }

    /// Puts a policy: `rules` is `[{"path": ..., "capabilities": [...]}, ...]`.
    pub fn put_policy(&self, name: &str, rules: &serde_json::Value) -> Result<(), ClientError> {
        let request = self
            .request("policy_put")
            .field("policy", name)
            .json("rules", rules)
            .finish();
        self.call(&request).map(drop)
    }

    /// One policy.
    pub fn policy(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        self.call(&self.request("policy_get").field("policy", name).finish())?
            .policy
            .ok_or(ClientError::Protocol("a policy_get reply without a policy"))
    }

    /// Every policy and every binding.
    pub fn policies(
        &self,
    ) -> Result<(Vec<serde_json::Value>, Vec<serde_json::Value>), ClientError> {
        let reply = self.call(&self.request("policy_list").finish())?;
        Ok((
            reply.policies.unwrap_or_default(),
            reply.subjects.unwrap_or_default(),
        ))
    }

    /// Deletes a run-time policy.
    pub fn delete_policy(&self, name: &str) -> Result<(), ClientError> {
        self.call(&self.request("policy_delete").field("policy", name).finish())
            .map(drop)
    }

    /// Binds a subject to policies (none: unbinds it).
    pub fn bind(&self, subject: &str, policies: &[String]) -> Result<(), ClientError> {
        let request = self
            .request("subject_set")
            .field("subject", subject)
            .json("policies", &policies)
            .finish();
        self.call(&request).map(drop)
    }

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
            info: reply.token_info.take().unwrap_or_default(),
        })
    }

    /// Every live token's record.
    pub fn tokens(&self) -> Result<Vec<serde_json::Value>, ClientError> {
        Ok(self
            .call(&self.request("token_list").finish())?
            .tokens
            .unwrap_or_default())
    }

    /// Revokes a token.
    pub fn revoke_token(&self, accessor: &str) -> Result<(), ClientError> {
        self.call(
            &self
                .request("token_revoke")
                .field("accessor", accessor)
                .finish(),
        )
        .map(drop)
    }

    /// A token's record: by accessor, or (`None`) the client's own token.
    pub fn lookup_token(&self, accessor: Option<&str>) -> Result<serde_json::Value, ClientError> {
        self.call(
            &self
                .request("token_lookup")
                .opt("accessor", accessor)
                .finish(),
        )?
        .token_info
        .ok_or(ClientError::Protocol(
            "a token_lookup reply without token_info",
        ))
    }

    /// The audit log's hashes of a name and a namespace.
    pub fn audit_hash(
        &self,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), ClientError> {
        let reply = self.call(
            &self
                .request("audit_hash")
                .opt("name", name)
                .opt("namespace", namespace)
                .finish(),
        )?;
        Ok((reply.name_hash, reply.namespace_hash))
    }

    /// The daemon's verification of its audit log.
    pub fn audit_verify(&self) -> Result<serde_json::Value, ClientError> {
        self.call(&self.request("audit_verify").finish())?
            .audit
            .ok_or(ClientError::Protocol("an audit_verify reply without audit"))
    }

    /// The key slots.
    pub fn slots(&self) -> Result<Vec<SlotSummary>, ClientError> {
        self.call(&self.request("slot_list").finish())?
            .slots
            .ok_or(ClientError::Protocol("a slot_list reply without slots"))
    }

    /// Adds a key slot; answers its id and, for a recovery slot, the recovery key.
    pub fn add_slot(&self, slot: &NewSlot<'_>) -> Result<AddedSlot, ClientError> {
        let mut b = self
            .request("slot_add")
            .field("kind", slot.kind)
            .opt("pcrs", slot.pcrs)
            .opt("path", slot.path);
        if let Some(key) = slot.passphrase {
            b = b.secret("key", key);
        }
        let mut reply = self.call(&b.finish())?;
        Ok(AddedSlot {
            id: reply
                .slot_id
                .ok_or(ClientError::Protocol("a slot_add reply without slot_id"))?,
            recovery_key: reply.recovery_key.take(),
        })
    }

    /// Removes a key slot (the daemon refuses the last one).
    pub fn remove_slot(&self, id: u32) -> Result<(), ClientError> {
        let request = self
            .request("slot_remove")
            .number("slot_id", id.into())
            .finish();
        self.call(&request).map(drop)
    }

    /// Seals TPM slots (one, or all) to the PCRs' current values; answers those resealed.
    pub fn reseal(
        &self,
        id: Option<u32>,
        passphrase: Option<&SecretBytes>,
    ) -> Result<Vec<u32>, ClientError> {
        let mut b = self
            .request("slot_reseal")
            .opt_number("slot_id", id.map(u64::from));
        if let Some(key) = passphrase {
            b = b.secret("key", key);
        }
        self.call(&b.finish())?
            .resealed
            .ok_or(ClientError::Protocol(
                "a slot_reseal reply without resealed",
            ))
    }
}

/// A token just made.
pub struct CreatedToken {
    /// The token: shown this once.
    pub token: SecretBytes,
    /// Its record (accessor, policies, expiry).
    pub info: serde_json::Value,
}

/// What a new token carries.
pub struct TokenRequest<'a> {
    /// Its policies.
    pub policies: &'a [String],
    /// Its time to live.
    pub ttl: Duration,
    /// A namespace it is confined to.
    pub namespace: Option<&'a str>,
    /// A label.
    pub display_name: Option<&'a str>,
}

/// A key slot to add.
#[derive(Default)]
pub struct NewSlot<'a> {
    /// `file`, `passphrase`, `recovery`, `tpm` or `tpm+passphrase`.
    pub kind: &'a str,
    /// The PCR policy of a TPM slot, e.g. `sha256:0,2,7`.
    pub pcrs: Option<&'a str>,
    /// The key file of a file slot.
    pub path: Option<&'a str>,
    /// The passphrase of a passphrase slot.
    pub passphrase: Option<&'a SecretBytes>,
}

/// A slot just added.
pub struct AddedSlot {
    /// Its id.
    pub id: u32,
    /// The recovery key, for a recovery slot: shown this once.
    pub recovery_key: Option<SecretBytes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_valid_json() {
        let v = SecretBytes::copy_from(b"a \"quoted\"\nvalue");
        let req = RequestBuilder::new("set")
            .field("name", "k")
            .opt("namespace", None)
            .number("version", 3)
            .flag("keep_alive", true)
            .secret("value", &v)
            .finish();
        let parsed: serde_json::Value = serde_json::from_slice(&req).unwrap();
        assert_eq!(parsed["action"], "set");
        assert_eq!(parsed["value"], "a \"quoted\"\nvalue");
        assert_eq!(parsed["version"], 3);
        assert_eq!(parsed["keep_alive"], true);
        assert!(parsed.get("namespace").is_none());
        let bin = SecretBytes::copy_from(&[0xff, 0]);
        let req = RequestBuilder::new("set").secret("value", &bin).finish();
        let parsed: serde_json::Value = serde_json::from_slice(&req).unwrap();
        assert_eq!(parsed["value_b64"], "/wA=");
    }

    #[test]
    fn a_missing_socket_names_itself() {
        let err = Client::new("/nonexistent/coffer.sock")
            .status()
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/coffer.sock"),
            "{err}"
        );
        assert_eq!(err.code(), ErrorCode::StoreUnavailable);
    }
}
