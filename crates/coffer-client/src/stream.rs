//! Many replies on one connection (docs/protocol.md, Framing).
//!
//! [`Replies`] reads a stream the daemon writes in answer to one request (a `watch`), one
//! newline-delimited reply at a time, until the daemon closes or the caller drops it.
//! [`Session`] is a keep-alive connection: its first request carries `"keep_alive": true`,
//! and from then on each request is a line answered by one reply line, in order.
//!
//! Both read through the same zeroizing, size-limited line reader as a one-shot call.

use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::ClientError;
use crate::reply::{self, Reply};
use crate::request::{Client, Connection, RequestBuilder};

impl Client {
    /// Sends `request` and reads the replies it is answered with, one per line, on its own
    /// connection. The stream waits for replies as long as it takes (a `watch` may be quiet
    /// for hours); give it a timeout with [`Replies::set_read_timeout`]. Dropping it closes
    /// the connection, which ends the stream on the daemon's side.
    pub fn stream(&self, request: &[u8]) -> Result<Replies, ClientError> {
        let mut conn = self.connect()?;
        conn.set_read_timeout(None)?;
        conn.send(request)?;
        Ok(Replies {
            conn: Some(conn),
            shape: PhantomData,
        })
    }

    /// Opens a keep-alive session: several requests on one connection, one reply each.
    pub fn session(&self) -> Result<Session<'_>, ClientError> {
        Ok(Session {
            client: self,
            conn: Some(self.connect()?),
            sent: 0,
        })
    }
}

/// The replies to one request, read line by line from its connection.
///
/// Each item is a decoded reply; a line that is an error reply is yielded as that error (a
/// [`ClientError::Refused`]) and ends the stream, as do a broken connection, a line the
/// protocol does not allow, and one longer than the client's limit. The daemon closing the
/// connection ends it without an error.
pub struct Replies<T = Reply> {
    /// `None` once the stream has ended.
    conn: Option<Connection>,
    shape: PhantomData<fn() -> T>,
}

impl<T> Replies<T> {
    /// The same stream, each reply decoded as `T` (for replies whose fields [`Reply`] does
    /// not hold, such as a watch's events). A `T` that holds a value should hold it in
    /// `SecretBytes`.
    pub fn decoded_as<U: DeserializeOwned>(self) -> Replies<U> {
        Replies {
            conn: self.conn,
            shape: PhantomData,
        }
    }

    /// How long to wait for the next reply before failing (`None`, the default: for ever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        match &self.conn {
            Some(conn) => conn.set_read_timeout(timeout),
            None => Ok(()),
        }
    }
}

impl<T: DeserializeOwned> Iterator for Replies<T> {
    type Item = Result<T, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        let conn = self.conn.as_mut()?;
        let failure = match conn.read_line(reply::decode::<T>) {
            Ok(Some(Ok(reply))) => return Some(Ok(reply)),
            Ok(Some(Err(e))) | Err(e) => Some(Err(e)),
            Ok(None) => None,
        };
        // Ended: close the connection now rather than when the iterator is dropped.
        self.conn = None;
        failure
    }
}

impl<T: DeserializeOwned> FusedIterator for Replies<T> {}

/// A keep-alive connection: requests answered in order, one reply each.
///
/// The session numbers its requests with `id` and checks the id each reply echoes, so a
/// reply is never taken for another's; requests given to it must carry neither `id` nor
/// `keep_alive`. A refusal fails that call only; a broken connection, or a reply that is out
/// of order or not understood, closes the session, and later calls fail.
pub struct Session<'c> {
    client: &'c Client,
    /// `None` once the session is closed.
    conn: Option<Connection>,
    sent: u64,
}

impl Session<'_> {
    /// A request for `action` carrying the client's token, if it has one.
    pub fn request(&self, action: &str) -> RequestBuilder {
        self.client.request(action)
    }

    /// Sends one request and reads its reply.
    pub fn call(&mut self, request: RequestBuilder) -> Result<Reply, ClientError> {
        let conn = self.conn.as_mut().ok_or(ClientError::Protocol(
            "the session's connection has closed; open a new session",
        ))?;
        let id = self.sent + 1;
        let mut request = request.number("id", id);
        if self.sent == 0 {
            request = request.flag("keep_alive", true);
        }
        let outcome = exchange(conn, &request.finish_line(), id);
        self.sent = id;
        match outcome {
            Err(e @ ClientError::Refused { .. }) => Err(e),
            Err(e) => {
                self.conn = None;
                Err(e)
            }
            Ok(reply) => Ok(reply),
        }
    }
}

/// Writes one request line and reads its reply, which must echo `id`.
fn exchange(conn: &mut Connection, line: &[u8], id: u64) -> Result<Reply, ClientError> {
    conn.send(line)?;
    let decoded = conn.read_line(|line| {
        // The id first: a refusal out of order must not pass for this request's. Replies
        // come in order, so one without an id (possible only for a line the daemon could not
        // read) still answers this request.
        match echoed_id(line)? {
            Some(echoed) if echoed != id => Err(ClientError::Protocol(
                "a keep-alive reply answers another request than the one sent",
            )),
            _ => reply::decode::<Reply>(line),
        }
    })?;
    decoded.unwrap_or(Err(ClientError::Protocol(
        "coffer closed the connection before replying",
    )))
}

/// The `id` a reply echoes, skipping every other field unread.
fn echoed_id(line: &[u8]) -> Result<Option<u64>, ClientError> {
    #[derive(serde::Deserialize)]
    struct Echo {
        #[serde(default)]
        id: Option<u64>,
    }
    serde_json::from_slice::<Echo>(line)
        .map(|e| e.id)
        .map_err(|_| ClientError::Protocol("a keep-alive reply is not a JSON object with an id"))
}
