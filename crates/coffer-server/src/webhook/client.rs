//! One delivery attempt: an HTTP/1.1 POST over a fresh connection (TLS for `https://`,
//! trusting Mozilla's roots from `webpki-roots`), within the attempt's time limit. Redirects
//! are not followed; the status is the outcome.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Sends deliveries.
pub(super) struct Sender {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl Sender {
    /// A sender whose attempts end after `timeout`.
    pub(super) fn new(timeout: Duration) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("webhook TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// POSTs `body` to `url` with `headers`; answers the HTTP status, or why there is none.
    pub(super) async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<u16, String> {
        match tokio::time::timeout(self.timeout, self.send(url, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}s", self.timeout.as_secs())),
        }
    }

    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<u16, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| "the URL does not parse".to_owned())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the URL is neither https:// nor http://".to_owned()),
        };
        let authority = uri.authority().ok_or("the URL has no host")?.clone();
        let host = coffer_core::webhook::host_of(authority.as_str())
            .ok_or("the URL has no host")?
            .to_owned();
        // Checked when the webhook was added; checked again before any byte is sent.
        if !https && !coffer_core::webhook::is_loopback(&host) {
            return Err("plain http:// is only allowed to a loopback address".to_owned());
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), ToString::to_string);
        let mut request = hyper::Request::post(path)
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::CONTENT_LENGTH, body.len())
            .header(
                hyper::header::USER_AGENT,
                concat!("coffer/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot make the request: {e}"))?;
        if https {
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|_| "the host is not a valid TLS server name".to_owned())?;
            let stream = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(stream, request).await
        } else {
            exchange(tcp, request).await
        }
    }
}

async fn exchange<S>(io: S, request: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(async move {
        // Ends with the exchange; its error is the request's own.
        let _ = connection.await;
    });
    let answer = send
        .send_request(request)
        .await
        .map(|response| response.status().as_u16())
        .map_err(|e| format!("HTTP: {e}"));
    driver.abort();
    answer
}
