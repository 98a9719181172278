//! `watch`: the change events the caller may see, as they commit.

use coffer_types::WatchLine;

use crate::ClientError;
use crate::request::Client;
use crate::stream::Replies;

/// Where a watch looks and from when.
#[derive(Debug, Clone, Default)]
pub struct WatchFrom<'a> {
    /// The namespace (`default` when `None`).
    pub namespace: Option<&'a str>,
    /// Only names starting with this.
    pub prefix: Option<&'a str>,
    /// Events after this revision; `None`: from now.
    pub since: Option<u64>,
}

impl Client {
    /// Starts a watch: the first line says the revision it starts after
    /// ([`WatchLine::Started`]), then events and heartbeats follow until the stream is
    /// dropped; a refusal (before or during the stream, such as `resync`) is an error item.
    pub fn watch(&self, from: &WatchFrom<'_>) -> Result<Replies<WatchLine>, ClientError> {
        let request = self
            .request("watch")
            .opt("namespace", from.namespace)
            .opt("prefix", from.prefix)
            .opt_number("since", from.since)
            .finish();
        Ok(self.stream(&request)?.decoded_as())
    }
}
