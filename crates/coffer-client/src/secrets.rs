//! Secrets: reading and writing values, minting and rotating them, their metadata and
//! history, listings, the values computed from them (HMAC, basic auth), and namespaces.
//!
//! Values go out and come back as `SecretBytes`; every other field is plain data.

use coffer_crypto::SecretBytes;
use coffer_types::{
    DigestEncoding, GeneratorSpec, HmacAlgorithm, Kind, NvIndex, SecretMeta, SecretSummary,
    Version, VersionInfo,
};

use crate::ClientError;
use crate::reply::Reply;
use crate::request::{Client, RequestBuilder};

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

impl WriteOptions {
    fn add(&self, b: RequestBuilder) -> RequestBuilder {
        b.opt("kind", self.kind.map(Kind::as_str))
            .opt("description", self.description.as_deref())
            .opt_number("max_versions", self.max_versions.map(u64::from))
    }
}

/// A rotation policy for `generate` (durations in seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationRequest {
    /// Seconds between rotations.
    pub every: u64,
    /// An absolute path to the hook that receives each new value on its standard input.
    pub command: Option<String>,
    /// Seconds the previous version stays readable after a rotation.
    pub grace: Option<u64>,
}

/// What a write answered.
#[derive(Debug)]
pub struct Written {
    /// The secret's index.
    pub index: NvIndex,
    /// The version written (`set` answers none, as the device daemon does).
    pub version: Option<Version>,
    /// The minted value, for `generate` and `rotate` with `generate`.
    pub value: Option<SecretBytes>,
}

impl Written {
    fn from_reply(mut reply: Reply) -> Result<Self, ClientError> {
        Ok(Self {
            index: reply
                .index
                .ok_or(ClientError::Protocol("a write reply without an index"))?,
            version: reply.version,
            value: reply.value.take(),
        })
    }
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

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// The cursor for the next page (`ListOptions::after`), when there is one.
    pub next: Option<String>,
}

fn spec_fields(b: RequestBuilder, spec: Option<GeneratorSpec>) -> RequestBuilder {
    match spec {
        Some(s) => b
            .number("byte_len", s.byte_len() as u64)
            .field("encoding", s.encoding.as_str()),
        None => b,
    }
}

impl Client {
    /// A request about one secret.
    fn about(&self, action: &str, namespace: Option<&str>, name: &str) -> RequestBuilder {
        self.request(action)
            .field("name", name)
            .opt("namespace", namespace)
    }

    /// Reads a value: the current version, or `version`.
    pub fn get(
        &self,
        namespace: Option<&str>,
        name: &str,
        version: Option<Version>,
    ) -> Result<SecretBytes, ClientError> {
        let b = self
            .about("get", namespace, name)
            .opt_number("version", version.map(|v| v.get().into()));
        self.call(&b.finish())?.take_value()
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
        let b = options.add(self.about("set", namespace, name));
        Written::from_reply(self.call(&b.secret("value", value).finish())?)
    }

    /// Deletes a secret and every version; the name and index are free.
    pub fn del(&self, namespace: Option<&str>, name: &str) -> Result<(), ClientError> {
        self.call(&self.about("del", namespace, name).finish())
            .map(drop)
    }

    /// Mints a value for a new secret; the value is in the answer, and nowhere else.
    pub fn generate(
        &self,
        namespace: Option<&str>,
        name: &str,
        spec: Option<GeneratorSpec>,
        options: &WriteOptions,
    ) -> Result<Written, ClientError> {
        let b = options.add(spec_fields(self.about("generate", namespace, name), spec));
        Written::from_reply(self.call(&b.finish())?)
    }

    /// Mints a value for a new secret that the daemon rotates on a schedule (`rotation`);
    /// answers the value once.
    pub fn generate_rotating(
        &self,
        namespace: Option<&str>,
        name: &str,
        spec: Option<GeneratorSpec>,
        options: &WriteOptions,
        rotation: &RotationRequest,
    ) -> Result<Written, ClientError> {
        let b = options.add(spec_fields(self.about("generate", namespace, name), spec));
        let b = b
            .number("rotate_every", rotation.every)
            .opt("rotate_command", rotation.command.as_deref())
            .opt_number("rotate_grace", rotation.grace);
        Written::from_reply(self.call(&b.finish())?)
    }

    /// The version before the last rotation, during its grace period.
    pub fn get_previous(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<SecretBytes, ClientError> {
        let b = self
            .about("get", namespace, name)
            .field("version", "previous");
        self.call(&b.finish())?.take_value()
    }

    /// A new version of an existing secret: `value`, or a minted one when it is `None`
    /// (with `spec`, or the secret's own generator).
    pub fn rotate(
        &self,
        namespace: Option<&str>,
        name: &str,
        value: Option<&SecretBytes>,
        spec: Option<GeneratorSpec>,
        options: &WriteOptions,
    ) -> Result<Written, ClientError> {
        let b = self.about("rotate", namespace, name);
        let b = match value {
            Some(v) => options.add(b).secret("value", v),
            None => options.add(spec_fields(b.flag("generate", true), spec)),
        };
        Written::from_reply(self.call(&b.finish())?)
    }

    /// Changes a description (empty clears it) or version limit (0: unlimited), without a
    /// new version.
    pub fn describe(
        &self,
        namespace: Option<&str>,
        name: &str,
        description: Option<&str>,
        max_versions: Option<u32>,
    ) -> Result<(), ClientError> {
        let request = self
            .about("describe", namespace, name)
            .opt("description", description)
            .opt_number("max_versions", max_versions.map(u64::from))
            .finish();
        self.call(&request).map(drop)
    }

    /// Revokes a secret: unreadable from now on, kept for audit; its name is free at once.
    pub fn revoke(&self, namespace: Option<&str>, name: &str) -> Result<(), ClientError> {
        self.call(&self.about("revoke", namespace, name).finish())
            .map(drop)
    }

    /// Erases versions' ciphertexts for good; answers the versions erased.
    pub fn destroy(
        &self,
        namespace: Option<&str>,
        name: &str,
        versions: &[Version],
    ) -> Result<Vec<Version>, ClientError> {
        let request = self
            .about("destroy", namespace, name)
            .json("versions", &versions)
            .finish();
        self.call(&request)?
            .destroyed
            .ok_or(ClientError::Protocol("a destroy reply without versions"))
    }

    /// A secret's metadata (never its value).
    pub fn meta(&self, namespace: Option<&str>, name: &str) -> Result<SecretMeta, ClientError> {
        self.call(&self.about("meta", namespace, name).finish())?
            .meta
            .ok_or(ClientError::Protocol("a meta reply without metadata"))
    }

    /// A secret's version history.
    pub fn versions(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Vec<VersionInfo>, ClientError> {
        self.call(&self.about("versions", namespace, name).finish())?
            .versions
            .ok_or(ClientError::Protocol("a versions reply without versions"))
    }

    /// A page of names.
    pub fn list(
        &self,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<Page<String>, ClientError> {
        let b = self.request("list").opt("namespace", namespace);
        let reply = self.call(&options.add(b).finish())?;
        Ok(Page {
            items: reply.names.unwrap_or_default(),
            next: reply.next,
        })
    }

    /// A page of secrets with their metadata.
    pub fn list_detail(
        &self,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<Page<SecretSummary>, ClientError> {
        let b = self
            .request("list")
            .opt("namespace", namespace)
            .flag("detail", true);
        let reply = self.call(&options.add(b).finish())?;
        Ok(Page {
            items: reply.secrets.unwrap_or_default(),
            next: reply.next,
        })
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
            .about("hmac", namespace, name)
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
            .about("basic_auth", namespace, name)
            .field("user", user)
            .finish();
        self.call(&request)?
            .header
            .ok_or(ClientError::Protocol("a basic_auth reply without a header"))
    }

    /// The yescrypt hash (`$y$j9T$salt$hash`, what crypt(3) computes) of a password secret;
    /// the password stays in the daemon. `setting` (an earlier hash, or `$y$params$salt`)
    /// reuses its parameters and salt, so an unchanged password gives the same string back;
    /// without it the daemon draws a fresh salt at libxcrypt's default cost.
    pub fn yescrypt(
        &self,
        namespace: Option<&str>,
        name: &str,
        setting: Option<&str>,
    ) -> Result<String, ClientError> {
        let mut b = self.about("yescrypt", namespace, name);
        if let Some(setting) = setting {
            b = b.field("setting", setting);
        }
        self.call(&b.finish())?
            .hash
            .ok_or(ClientError::Protocol("a yescrypt reply without a hash"))
    }

    /// The namespaces.
    pub fn namespaces(&self) -> Result<Vec<String>, ClientError> {
        Ok(self
            .call(&self.request("namespace_list").finish())?
            .namespaces
            .unwrap_or_default())
    }

    /// Starts a rotation of a namespace's key; its progress is in [`Client::status`]'s
    /// `key_rotations` until it completes.
    pub fn rotate_namespace_key(&self, namespace: &str) -> Result<(), ClientError> {
        let request = self
            .request("namespace_rotate_key")
            .field("namespace", namespace)
            .finish();
        self.call(&request).map(drop)
    }

    /// Creates a namespace.
    pub fn create_namespace(&self, namespace: &str) -> Result<(), ClientError> {
        self.create_namespace_with(namespace, None)
    }

    /// Creates a namespace; with `passphrase`, one that can be locked.
    pub fn create_namespace_with(
        &self,
        namespace: &str,
        passphrase: Option<&SecretBytes>,
    ) -> Result<(), ClientError> {
        let mut b = self
            .request("namespace_create")
            .field("namespace", namespace);
        if let Some(p) = passphrase {
            b = b.secret("key", p);
        }
        self.call(&b.finish()).map(drop)
    }

    /// The namespaces, and those of them locked.
    pub fn namespace_states(&self) -> Result<(Vec<String>, Vec<String>), ClientError> {
        let reply = self.call(&self.request("namespace_list").finish())?;
        Ok((
            reply.namespaces.unwrap_or_default(),
            reply.locked.unwrap_or_default(),
        ))
    }

    /// Locks a namespace: its key is forgotten and its cached values flushed.
    pub fn lock_namespace(&self, namespace: &str) -> Result<(), ClientError> {
        let request = self
            .request("namespace_lock")
            .field("namespace", namespace)
            .finish();
        self.call(&request).map(drop)
    }

    /// Unlocks a namespace with its passphrase.
    pub fn unlock_namespace(
        &self,
        namespace: &str,
        passphrase: &SecretBytes,
    ) -> Result<(), ClientError> {
        let request = self
            .request("namespace_unlock")
            .field("namespace", namespace)
            .secret("key", passphrase)
            .finish();
        self.call(&request).map(drop)
    }

    /// Sets or changes the passphrase of an open namespace.
    pub fn set_namespace_passphrase(
        &self,
        namespace: &str,
        passphrase: &SecretBytes,
    ) -> Result<(), ClientError> {
        let request = self
            .request("namespace_passphrase")
            .field("namespace", namespace)
            .secret("key", passphrase)
            .finish();
        self.call(&request).map(drop)
    }
}
