//! The benches' one HTTP client: a keep-alive HTTP/1.1 connection on tokio,
//! small enough to add no crate (bench-load's load generator, bench-build's
//! readiness poll).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// POST /searches with `query` on a fresh connection: the accepted
/// search's id, or why it was not accepted (the benches count refusals).
pub async fn post_search(addr: &str, query: &str) -> Result<String, String> {
    let body = format!("{{\"query\": \"{query}\"}}");
    let (status, answer) = Conn::new(addr)
        .request("POST", "/searches", body.as_bytes())
        .await
        .map_err(|e| format!("POST /searches at {addr}: {e}"))?;
    let doc: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    match (status, doc["id"].as_str()) {
        (202, Some(id)) => Ok(id.to_owned()),
        _ => Err(format!("POST /searches answered {status}: {}", String::from_utf8_lossy(&answer))),
    }
}

/// How long one request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// One keep-alive HTTP/1.1 connection; reconnects after an error. The one
/// HTTP client of the benches.
pub struct Conn<'a> {
    addr: &'a str,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl<'a> Conn<'a> {
    pub fn new(addr: &'a str) -> Self {
        Conn { addr, stream: None, buf: Vec::new() }
    }

    pub async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body))
            .await
            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")));
        match result {
            Ok((status, body, close)) => {
                if close {
                    self.stream = None;
                }
                Ok((status, body))
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    async fn exchange(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>, bool)> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        stream.write_all(&req).await?;
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status =
                    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status"))?;
                let header = |name: &str| {
                    head.lines().skip(1).find_map(|l| {
                        l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
                    })
                };
                let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
                let total = end + 4 + length;
                while self.buf.len() < total {
                    self.fill(&bad("connection closed mid-body")).await?;
                }
                let body = self.buf[end + 4..total].to_vec();
                self.buf.drain(..total);
                return Ok((status, body, close));
            }
            self.fill(&bad("connection closed before an answer")).await?;
        }
    }

    async fn fill(&mut self, eof: &std::io::Error) -> std::io::Result<()> {
        let stream = self.stream.as_mut().expect("connected");
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(eof.kind(), eof.to_string()));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// True when `GET path` on 127.0.0.1:port answers 200 within 2 s.
pub async fn http_ok(port: u16, path: &str) -> bool {
    let addr = format!("127.0.0.1:{port}");
    let mut conn = Conn::new(&addr);
    let get = conn.request("GET", path, b"");
    matches!(tokio::time::timeout(Duration::from_secs(2), get).await, Ok(Ok((200, _))))
}
