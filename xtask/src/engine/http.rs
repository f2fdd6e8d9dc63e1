//! The one Engine API request bollard cannot make for us without its
//! BuildKit feature (a gRPC stack): `POST /build` whose answer carries
//! BuildKit's protobuf traces. Plain HTTP/1.1 over the engine's socket.

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// The answer's body, one JSON line at a time.
pub struct Lines {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
    _connection: tokio::task::JoinHandle<()>,
}

impl Lines {
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                return Ok(Some(self.buf.drain(..=pos).collect()));
            }
            if self.done {
                return Ok((!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf)));
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame.context("the engine's answer broke off")?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                None => self.done = true,
            }
        }
    }
}

/// `application/x-www-form-urlencoded`-style escaping of a query value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn query_string(query: &[(&str, String)]) -> String {
    query.iter().map(|(k, v)| format!("{k}={}", escape(v))).collect::<Vec<_>>().join("&")
}

/// POSTs a tar body to the engine named by DOCKER_HOST (default: the local
/// socket) and returns the answer's lines; a non-2xx answer is an error
/// carrying the engine's message.
pub async fn post_lines(path: &str, query: &[(&str, String)], tar: Vec<u8>) -> Result<Lines> {
    post(path, query, &[("Content-Type", "application/x-tar".to_owned())], tar).await
}

/// POSTs `body` with `headers`; the answer's lines, or the engine's message
/// when it refused.
pub async fn post(path: &str, query: &[(&str, String)], headers: &[(&str, String)], body: Vec<u8>) -> Result<Lines> {
    let mut request = hyper::Request::post(format!("{path}?{}", query_string(query))).header("Host", "docker");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let (status, mut lines) = exchange(request.body(Full::new(Bytes::from(body)))?).await?;
    if !status.is_success() {
        bail!("the engine refused POST {path} ({status}): {}", lines.message().await?);
    }
    Ok(lines)
}

/// GETs `path` and parses the answer as JSON; a non-2xx answer is an error
/// carrying the engine's message.
pub async fn get_json(path: &str) -> Result<serde_json::Value> {
    let request = hyper::Request::get(path).header("Host", "docker").body(Full::new(Bytes::new()))?;
    let (status, mut lines) = exchange(request).await?;
    let text = lines.message().await?;
    if !status.is_success() {
        bail!("GET {path} failed ({status}): {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON: {text}"))
}

impl Lines {
    /// The rest of the answer as text: the `message` of a JSON error, or the text.
    async fn message(&mut self) -> Result<String> {
        let mut text = Vec::new();
        while let Some(line) = self.next_line().await? {
            text.extend(line);
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        Ok(serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned()))
    }
}

/// Sends `request` to the engine of DOCKER_HOST over one connection.
async fn exchange(request: hyper::Request<Full<Bytes>>) -> Result<(hyper::StatusCode, Lines)> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
    let cannot = |e: std::io::Error| anyhow!("cannot reach the Docker engine at {host} ({e}): {}", super::ENGINE_HELP);
    let (response, connection) = if let Some(socket) = host.strip_prefix("unix://") {
        send(tokio::net::UnixStream::connect(socket).await.map_err(cannot)?, request).await?
    } else if let Some(address) = host.strip_prefix("tcp://") {
        send(tokio::net::TcpStream::connect(address).await.map_err(cannot)?, request).await?
    } else {
        bail!("DOCKER_HOST={host}: the xtask talks to unix:// or tcp:// engines only");
    };
    let status = response.status();
    Ok((status, Lines { body: response.into_body(), buf: Vec::new(), done: false, _connection: connection }))
}

async fn send<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(hyper::Response<Incoming>, tokio::task::JoinHandle<()>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP handshake with the engine")?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await.context("sending a request to the engine")?;
    Ok((response, connection))
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_escaped() {
        let q = super::query_string(&[("t", "a/b:1".into()), ("buildargs", "{\"A\":\"x y\"}".into())]);
        assert_eq!(q, "t=a%2Fb%3A1&buildargs=%7B%22A%22%3A%22x%20y%22%7D");
    }
}
