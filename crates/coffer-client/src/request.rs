//! Requests and the connections they travel on.
//!
//! [`RequestBuilder`] writes a request object field by field into a buffer that is sized
//! before a secret goes in and zeroized when dropped. [`Client`] holds the socket and its
//! settings and makes the protocol's ordinary call: connect, write one object, read the reply
//! to the end of stream (DESIGN.md, Local socket protocol). `Connection` does the reading for
//! every kind of call, whole or line by line, into buffers that are zeroized as they are
//! consumed, grown, or dropped, and never past the client's size limit.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_types::wire::json_string_len;
use zeroize::{Zeroize, Zeroizing};

use crate::ClientError;
use crate::reply::{self, Reply};

/// Builds a request object field by field into a buffer that is zeroized on drop.
///
/// Keys are written as given (they are the protocol's field names, never input); values are
/// escaped as JSON strings, so a finished request is one line.
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

    /// Room for `more` bytes, moving (and zeroizing) the old buffer if it must grow, so no
    /// copy of what it held is left behind in freed memory.
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

    /// An optional number field.
    pub fn opt_number(self, key: &str, n: Option<u64>) -> Self {
        match n {
            Some(n) => self.number(key, n),
            None => self,
        }
    }

    /// A field holding any JSON that is not secret.
    pub fn json(mut self, key: &str, value: &impl serde::Serialize) -> Self {
        // Serializing plain data (numbers, strings, lists and objects of them) cannot fail.
        let text = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        self.reserve(key.len() + text.len() + 4);
        self.key(key);
        self.buf.extend_from_slice(&text);
        self
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
                self.reserve(key.len() + len + 16);
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

    /// The finished request as a line of newline-delimited JSON (keep-alive sessions).
    pub(crate) fn finish_line(mut self) -> Zeroizing<Vec<u8>> {
        self.reserve(2);
        self.buf.extend_from_slice(b"}\n");
        self.buf
    }
}

/// A client bound to one socket.
///
/// Before it writes anything on a connection, the client asks the kernel who listens at the
/// other end (SO_PEERCRED) and goes on only for root, its own user, or a uid allowed with
/// [`Client::trust_server_uid`]: a socket another user put where the daemon's should be
/// receives no token and no value ([`ClientError::UntrustedServer`]).
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    max_reply: usize,
    token: Option<SecretBytes>,
    /// uids trusted beside root and the client's own.
    server_uids: Vec<u32>,
}

impl Client {
    /// How long a read or write may stall before the call fails, unless changed.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// The longest reply (or line of a stream) accepted, unless changed: room for the
    /// largest value the daemon accepts by default (1 MiB), escaped at its worst (six bytes
    /// a byte), and for long pages of listings.
    pub const DEFAULT_MAX_REPLY: usize = 16 << 20;

    /// A client for the daemon at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_reply: Self::DEFAULT_MAX_REPLY,
            token: None,
            server_uids: Vec::new(),
        }
    }

    /// Also trusts a daemon running as `uid` (beside root and the client's own user).
    pub fn trust_server_uid(mut self, uid: u32) -> Self {
        self.server_uids.push(uid);
        self
    }

    /// Sends `token` with every request: they then run as the token.
    pub fn with_token(mut self, token: SecretBytes) -> Self {
        self.token = Some(token);
        self
    }

    /// How long a read or write may stall before the call fails.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest reply, or line of a stream, this client reads; longer ones fail with
    /// [`ClientError::ReplyTooLarge`].
    pub fn with_max_reply(mut self, bytes: usize) -> Self {
        self.max_reply = bytes;
        self
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A request for `action` carrying the client's token, if it has one.
    pub fn request(&self, action: &str) -> RequestBuilder {
        let b = RequestBuilder::new(action);
        match &self.token {
            Some(t) => b.secret("token", t),
            None => b,
        }
    }

    /// Sends one request on a connection of its own and reads the whole reply.
    pub fn call(&self, request: &[u8]) -> Result<Reply, ClientError> {
        let mut conn = self.connect()?;
        conn.send(request)?;
        reply::decode(conn.read_to_end()?)
    }

    /// Sends one request and reads its reply into `T`, for replies shaped other than
    /// [`Reply`] (AppRole's).
    pub fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        request: &[u8],
    ) -> Result<T, ClientError> {
        let mut conn = self.connect()?;
        conn.send(request)?;
        reply::decode(conn.read_to_end()?)
    }

    /// A connection to the daemon with the client's timeouts and size limit.
    pub(crate) fn connect(&self) -> Result<Connection, ClientError> {
        let stream = UnixStream::connect(&self.socket).map_err(|source| ClientError::Connect {
            path: self.socket.clone(),
            source,
        })?;
        self.check_server(&stream)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        Ok(Connection {
            stream,
            buf: Zeroizing::new(Vec::new()),
            limit: self.max_reply,
        })
    }
}

impl Client {
    /// Refuses a listener that is not root, the client's user or a trusted uid. The kernel
    /// recorded the listener's credentials when it called `listen`; they cannot be forged.
    fn check_server(&self, stream: &UnixStream) -> Result<(), ClientError> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let cred = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
        let (uid, me) = (cred.uid(), nix::unistd::geteuid().as_raw());
        if uid == 0 || uid == me || self.server_uids.contains(&uid) {
            return Ok(());
        }
        Err(ClientError::UntrustedServer {
            path: self.socket.clone(),
            uid,
            pid: (cred.pid() > 0).then_some(cred.pid()),
            me,
        })
    }
}

/// Bytes read from the socket at a time, at most.
const CHUNK: usize = 16 << 10;

/// One connection and the bytes read from it but not yet consumed.
///
/// Invariant: reply bytes live only in `buf[..len]`. Consuming a line zeroizes the room it
/// leaves, growing zeroizes the old allocation, and dropping zeroizes the whole capacity, so
/// no reply is left behind in freed memory.
pub(crate) struct Connection {
    stream: UnixStream,
    buf: Zeroizing<Vec<u8>>,
    limit: usize,
}

impl Connection {
    /// Writes a request (or a line of one).
    pub(crate) fn send(&mut self, request: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(request)?;
        Ok(())
    }

    /// How long a read may stall (`None`: for ever).
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.stream.set_read_timeout(timeout)?;
        Ok(())
    }

    /// Everything up to the end of stream: the reply of a one-request connection.
    pub(crate) fn read_to_end(&mut self) -> Result<&[u8], ClientError> {
        while self.fill()? > 0 {
            if self.buf.len() > self.limit {
                return Err(ClientError::ReplyTooLarge { limit: self.limit });
            }
        }
        Ok(&self.buf)
    }

    /// The next non-blank line, handed to `decode` and then zeroized; `None` at the end of
    /// stream. A last line without its newline still counts.
    pub(crate) fn read_line<R>(
        &mut self,
        decode: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, ClientError> {
        let mut scanned = 0;
        loop {
            if let Some(at) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + at;
                if end > self.limit {
                    return Err(ClientError::ReplyTooLarge { limit: self.limit });
                }
                if blank(&self.buf[..end]) {
                    self.consume(end + 1);
                    scanned = 0;
                    continue;
                }
                let decoded = decode(&self.buf[..end]);
                self.consume(end + 1);
                return Ok(Some(decoded));
            }
            scanned = self.buf.len();
            if scanned > self.limit {
                return Err(ClientError::ReplyTooLarge { limit: self.limit });
            }
            if self.fill()? == 0 {
                if blank(&self.buf) {
                    return Ok(None);
                }
                let decoded = decode(&self.buf);
                self.consume(self.buf.len());
                return Ok(Some(decoded));
            }
        }
    }

    /// Reads what is there (at most four chunks) onto the end of `buf`; 0 at the end of
    /// stream.
    fn fill(&mut self) -> Result<usize, ClientError> {
        let len = self.buf.len();
        if self.buf.capacity() - len < CHUNK {
            let want = (self.buf.capacity() * 2)
                .max(len + CHUNK)
                .min(self.limit.saturating_add(CHUNK).max(len + CHUNK));
            let mut bigger = Vec::with_capacity(want);
            bigger.extend_from_slice(&self.buf);
            self.buf.zeroize();
            *self.buf = bigger;
        }
        // Read straight into the spare capacity (zeros), so no other buffer sees the bytes.
        let room = (self.buf.capacity() - len).min(4 * CHUNK);
        self.buf.resize(len + room, 0);
        let read = loop {
            match self.stream.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *read.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n);
        read.map_err(ClientError::Io)
    }

    /// Drops the first `n` bytes, zeroizing the room they leave.
    fn consume(&mut self, n: usize) {
        let len = self.buf.len();
        self.buf.copy_within(n.., 0);
        self.buf[len - n..].zeroize();
        self.buf.truncate(len - n);
    }
}

fn blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::ErrorCode;

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
        assert!(!req.contains(&b'\n'), "a request is one line");
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

    fn connection(limit: usize) -> (Connection, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let conn = Connection {
            stream: ours,
            buf: Zeroizing::new(Vec::new()),
            limit,
        };
        (conn, theirs)
    }

    fn line(conn: &mut Connection) -> Option<String> {
        conn.read_line(|l| String::from_utf8(l.to_vec()).unwrap())
            .unwrap()
    }

    #[test]
    fn lines_split_across_reads_and_blank_lines_are_skipped() {
        let (mut conn, mut theirs) = connection(1 << 20);
        let writer = std::thread::spawn(move || {
            for piece in [&b"{\"a\":"[..], b"1}\n\n  \n{\"b\"", b":2}\n{\"c\":3}"] {
                theirs.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        assert_eq!(line(&mut conn).as_deref(), Some("{\"a\":1}"));
        assert_eq!(line(&mut conn).as_deref(), Some("{\"b\":2}"));
        assert_eq!(line(&mut conn).as_deref(), Some("{\"c\":3}"));
        writer.join().unwrap();
        assert_eq!(line(&mut conn), None);
        assert!(conn.buf.is_empty());
    }

    #[test]
    fn long_lines_and_replies_stop_at_the_limit() {
        let (mut conn, mut theirs) = connection(100);
        let writer = std::thread::spawn(move || {
            let _ = theirs.write_all(&[b'x'; 200_000]);
        });
        assert!(matches!(
            conn.read_line(|_| ()),
            Err(ClientError::ReplyTooLarge { limit: 100 })
        ));
        drop(conn);
        writer.join().unwrap();

        let (mut conn, mut theirs) = connection(100);
        theirs.write_all(&[b' '; 101]).unwrap();
        drop(theirs);
        assert!(matches!(
            conn.read_to_end(),
            Err(ClientError::ReplyTooLarge { limit: 100 })
        ));
    }
}
