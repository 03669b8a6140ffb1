//! A small SMTP server for the tests: it speaks enough of RFC 5321 for a
//! real client (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no STARTTLS
//! offered), records every message it accepts, and can be stopped and
//! started again on the same port (an outage).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA, dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl Received {
    /// The value of a header of the message's head.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = value.as_mut() {
                    v.push_str(line.trim_start());
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_owned());
                }
            }
        }
        value
    }

    /// The decoded body of the first part of this content type.
    pub fn part(&self, content_type: &str) -> Option<String> {
        let at = self.data.find(&format!("Content-Type: {content_type}"))?;
        let part = &self.data[at..];
        let (head, body) = part.split_once("\r\n\r\n")?;
        let body = body.split("\r\n--").next().unwrap_or(body);
        let encoding = head.to_ascii_lowercase();
        if encoding.contains("content-transfer-encoding: base64") {
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .ok()?;
            return String::from_utf8(bytes).ok();
        }
        if encoding.contains("content-transfer-encoding: quoted-printable") {
            return Some(decode_quoted_printable(body));
        }
        Some(body.to_owned())
    }

    pub fn text(&self) -> String {
        self.part("text/plain").expect("a text/plain part")
    }

    pub fn html(&self) -> String {
        self.part("text/html").expect("a text/html part")
    }

    /// The token of the first `token=` link in the text part.
    pub fn token(&self) -> String {
        let text = self.text();
        let at = text.find("token=").expect("a link with a token") + "token=".len();
        text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    /// The first link of the text part that carries a token.
    pub fn link(&self) -> String {
        self.text()
            .split_whitespace()
            .find(|w| w.starts_with("http") && w.contains("token="))
            .expect("a link with a token")
            .to_owned()
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 3 <= bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<Received>>,
    arrived: Notify,
}

/// The sink; dropped, it stops.
pub struct SmtpSink {
    pub port: u16,
    inbox: Arc<Inbox>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl SmtpSink {
    /// Listens on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sink = Self {
            port,
            inbox: Arc::default(),
            server: None,
        };
        sink.serve(listener);
        sink
    }

    /// A sink whose port is taken, but which is down until `restart`.
    pub async fn down() -> Self {
        let mut sink = Self::start().await;
        sink.stop().await;
        sink
    }

    fn serve(&mut self, listener: TcpListener) {
        let inbox = self.inbox.clone();
        self.server = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) ends every conversation.
            let mut conversations = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conversations.spawn(converse(stream, inbox.clone()));
            }
        }));
    }

    /// Stops listening and drops every conversation: the port refuses.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.inbox.messages.lock().unwrap().clone()
    }

    /// The messages to `to`.
    pub fn to(&self, to: &str) -> Vec<Received> {
        self.messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .collect()
    }

    /// Waits until `n` messages to `to` arrived; answers them all.
    pub async fn wait_for(&self, to: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.inbox.arrived.notified();
            let got = self.to(to);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "{n} mails to {to} within {within:?}: got {} ({:?})",
                    got.len(),
                    self.messages().iter().map(|m| &m.to).collect::<Vec<_>>()
                );
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The path of `MAIL FROM:<a>` or `RCPT TO:<a>`.
fn path_of(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].to_owned()
}

async fn converse(stream: TcpStream, inbox: Arc<Inbox>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if write.write_all(b"220 sink.test ESMTP\r\n").await.is_err() {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 sink.test\r\n",
            "MAIL" => {
                from = path_of(&command);
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                to.push(path_of(&command));
                b"250 OK\r\n"
            }
            "DATA" => {
                if write
                    .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                inbox.messages.lock().unwrap().push(Received {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                });
                inbox.arrived.notify_waiters();
                b"250 OK queued\r\n"
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 command not implemented\r\n",
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}
