//! One keep-alive HTTP/1.1 connection over plain TCP, to a loopback address
//! only, reconnecting when the server closes it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, ORIGIN, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the server is: a loopback socket address, its `Host` header and its
/// origin (`http://HOST:PORT`).
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    pub origin: String,
}

impl Endpoint {
    /// Parses `http://IP:PORT` (an IP literal, loopback only: this tool
    /// must never load anything but the machine it runs on).
    pub fn parse(url: &str) -> Result<Self> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad --url {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--url must be plain http://IP:PORT, got {url:?}");
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            bail!("--url takes no path or query (paths come from --target), got {url:?}");
        }
        let host = uri.host().context("--url has no host")?;
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .with_context(|| format!("--url host must be an IP literal, got {host:?}"))?;
        if !ip.is_loopback() {
            bail!("refusing to load {ip}: only loopback addresses may be targets");
        }
        let port = uri.port_u16().unwrap_or(80);
        let addr = SocketAddr::new(ip, port);
        let authority = match ip {
            IpAddr::V4(_) => format!("{ip}:{port}"),
            IpAddr::V6(_) => format!("[{ip}]:{port}"),
        };
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&authority)?,
            origin: format!("http://{authority}"),
        })
    }
}

/// A request as the scenarios need them.
pub struct Req<'a> {
    pub method: Method,
    pub path: &'a str,
    pub bearer: Option<&'a str>,
    /// A whole `Authorization` value (`Basic ...`: OAuth client
    /// authentication); never together with `bearer`.
    pub basic: Option<&'a HeaderValue>,
    pub cookie: Option<&'a str>,
    pub origin: Option<&'a HeaderValue>,
    pub body: Option<Body>,
}

/// Percent-encodes all but the unreserved characters (RFC 3986), for
/// form bodies and for Basic client credentials (RFC 6749 §2.3.1). A space
/// becomes `%20`, which every form decoder reads, unlike `+` in Basic.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64, padded (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Basic base64(urlencode(id):urlencode(secret))`, the OAuth client's
/// `Authorization` (RFC 6749 §2.3.1).
pub fn basic_auth(client_id: &str, client_secret: &str) -> Result<HeaderValue> {
    let pair = format!("{}:{}", urlencode(client_id), urlencode(client_secret));
    Ok(HeaderValue::from_str(&format!(
        "Basic {}",
        base64(pair.as_bytes())
    ))?)
}

/// A request body with its content type.
#[derive(Clone)]
pub enum Body {
    Json(Bytes),
    /// `application/x-www-form-urlencoded`.
    Form(Bytes),
}

/// A whole answer, body read.
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The value of the cookie `name` set by this answer, if any (`Some("")`
    /// when it is cleared).
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
                let (k, val) = pair.split_once('=')?;
                if k.trim() != name {
                    return None;
                }
                let cleared = attrs
                    .split(';')
                    .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
                Some(if cleared { "" } else { val.trim() })
            })
    }

    /// A short text of the body for error messages.
    pub fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(300).collect()
    }
}

/// One connection (one virtual user).
pub struct Conn {
    endpoint: Endpoint,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// How many times it connected (1 = never dropped).
    pub connects: u64,
}

impl Conn {
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            sender: None,
            connects: 0,
        }
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect(self.endpoint.addr),
        )
        .await
        .with_context(|| format!("connecting to {} timed out", self.endpoint.addr))?
        .with_context(|| format!("connecting to {}", self.endpoint.addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the server closes or the sender is dropped; an error
            // here shows up on the next request.
            let _ = conn.await;
        });
        self.connects += 1;
        Ok(sender)
    }

    /// Opens the connection now (so that setup does not count it).
    pub async fn ensure_connected(&mut self) -> Result<()> {
        if self.sender.as_ref().is_some_and(|s| !s.is_closed()) {
            return Ok(());
        }
        self.sender = Some(self.connect().await?);
        Ok(())
    }

    /// Sends one request and reads the whole answer. A connection the server
    /// closed while idle is reopened first; one that fails during the
    /// request is dropped (and reopened by the next call) and the error
    /// returned.
    pub async fn send(&mut self, req: Req<'_>) -> Result<Answer> {
        let (parts, body, sender) = self.start(req).await?;
        let body = body.collect().await?.to_bytes();
        self.keep(sender, &parts.headers);
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends one request and counts the bytes of its answer's body without
    /// keeping them, until the body ends or `deadline`: (status, bytes,
    /// whether the body was read to its end).
    pub async fn send_counting(
        &mut self,
        req: Req<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<(StatusCode, u64, bool)> {
        let (parts, mut body, sender) = tokio::time::timeout_at(deadline, self.start(req))
            .await
            .context("no answer by the deadline")??;
        let mut bytes = 0u64;
        loop {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Ok((parts.status, bytes, false)),
                Ok(None) => break,
                Ok(Some(frame)) => {
                    if let Ok(data) = frame?.into_data() {
                        bytes += data.len() as u64;
                    }
                }
            }
        }
        self.keep(sender, &parts.headers);
        Ok((parts.status, bytes, true))
    }

    /// Sends the request and waits for the head of the answer.
    async fn start(
        &mut self,
        req: Req<'_>,
    ) -> Result<(
        hyper::http::response::Parts,
        hyper::body::Incoming,
        SendRequest<Full<Bytes>>,
    )> {
        let mut builder = Request::builder()
            .method(req.method)
            .uri(req.path)
            .header(HOST, self.endpoint.host.clone());
        match (req.bearer, req.basic) {
            (Some(_), Some(_)) => {
                bail!("a request has one Authorization, not a Bearer and a Basic")
            }
            (Some(token), None) => {
                builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            (None, Some(basic)) => builder = builder.header(AUTHORIZATION, basic.clone()),
            (None, None) => {}
        }
        if let Some(cookie) = req.cookie {
            builder = builder.header(COOKIE, cookie);
        }
        if let Some(origin) = req.origin {
            builder = builder.header(ORIGIN, origin.clone());
        }
        let body = match req.body {
            Some(Body::Json(json)) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                json
            }
            Some(Body::Form(form)) => {
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                form
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(body))?;

        let mut sender = match self.sender.take() {
            Some(mut s) if !s.is_closed() => match s.ready().await {
                Ok(()) => s,
                Err(_) => self.connect().await?,
            },
            _ => self.connect().await?,
        };
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        Ok((parts, body, sender))
    }

    /// Keeps the connection for the next request unless the server said
    /// it closes it.
    fn keep(&mut self, sender: SendRequest<Full<Bytes>>, headers: &hyper::HeaderMap) {
        let close = headers
            .get(hyper::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if !close {
            self.sender = Some(sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_literals_are_targets() {
        assert!(Endpoint::parse("http://127.0.0.1:3000").is_ok());
        assert!(Endpoint::parse("http://127.0.0.2:3000").is_ok());
        assert!(Endpoint::parse("http://[::1]:3000").is_ok());
        assert!(Endpoint::parse("http://10.0.0.1:3000").is_err());
        assert!(Endpoint::parse("http://0.0.0.0:3000").is_err());
        assert!(Endpoint::parse("http://example.com:3000").is_err());
        assert!(Endpoint::parse("http://localhost:3000").is_err());
        assert!(Endpoint::parse("https://127.0.0.1:3000").is_err());
        assert!(Endpoint::parse("http://127.0.0.1:3000/v1").is_err());
        let e = Endpoint::parse("http://127.0.0.1:3000/").unwrap();
        assert_eq!(e.origin, "http://127.0.0.1:3000");
        assert_eq!(e.host, "127.0.0.1:3000");
        let e = Endpoint::parse("http://[::1]:8080").unwrap();
        assert_eq!(e.origin, "http://[::1]:8080");
    }

    #[test]
    fn basic_client_credentials() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(urlencode("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(urlencode("a b+c/=:é"), "a%20b%2Bc%2F%3D%3A%C3%A9");
        // RFC 6749 §2.3.1 example client s6BhdRkqt3 / 7Fjfp0ZBr1KtDRbnfVdmIw.
        assert_eq!(
            basic_auth("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw").unwrap(),
            "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3"
        );
        assert_eq!(
            basic_auth("bench", "a:b").unwrap(),
            format!("Basic {}", base64(b"bench:a%3Ab"))
        );
    }

    #[test]
    fn set_cookie_finds_value_and_clearing() {
        let mut headers = hyper::HeaderMap::new();
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("accessToken=aaa; HttpOnly; Path=/"),
        );
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("refreshToken=rrr; HttpOnly; Path=/v1/auth; Max-Age=604800"),
        );
        let a = Answer {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        };
        assert_eq!(a.set_cookie("refreshToken"), Some("rrr"));
        assert_eq!(a.set_cookie("accessToken"), Some("aaa"));
        assert_eq!(a.set_cookie("other"), None);

        let mut headers = hyper::HeaderMap::new();
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("refreshToken=; Path=/v1/auth; Max-Age=0"),
        );
        let a = Answer {
            status: StatusCode::UNAUTHORIZED,
            headers,
            body: Bytes::new(),
        };
        assert_eq!(a.set_cookie("refreshToken"), Some(""));
    }
}
