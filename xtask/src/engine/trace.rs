//! BuildKit's progress as the engine streams it during a `/build` with
//! `version=2`: JSON lines whose `aux` (id `moby.buildkit.trace`) is a
//! base64 `StatusResponse` protobuf message. Only the fields this xtask shows
//! are decoded, by hand: a protobuf/gRPC stack for five fields would double
//! the xtask's cold compile.
//!
//! ```text
//! StatusResponse { repeated Vertex vertexes = 1; repeated VertexLog logs = 3; }
//! Vertex    { string digest = 1; string name = 3; bool cached = 4;
//!             Timestamp started = 5; Timestamp completed = 6; string error = 7; }
//! VertexLog { string vertex = 1; bytes msg = 4; }
//! ```

use anyhow::{bail, Context, Result};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Vertex {
    pub digest: String,
    pub name: String,
    pub cached: bool,
    pub started: bool,
    pub completed: bool,
    pub error: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Log {
    pub vertex: String,
    pub msg: Vec<u8>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Status {
    pub vertexes: Vec<Vertex>,
    pub logs: Vec<Log>,
}

/// One field of a protobuf message: its number and its value.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).context("truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    bail!("varint longer than 64 bits")
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Value<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let value = match key & 7 {
            0 => Value::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if key & 7 == 1 { 8 } else { 4 };
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?)?;
                let bytes = buf.get(pos..pos + len).context("truncated field")?;
                pos += len;
                Value::Bytes(bytes)
            }
            t => bail!("unsupported wire type {t}"),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn vertex(buf: &[u8]) -> Result<Vertex> {
    let mut v = Vertex::default();
    for (field, value) in fields(buf)? {
        match (field, value) {
            (1, Value::Bytes(b)) => v.digest = text(b),
            (3, Value::Bytes(b)) => v.name = text(b),
            (4, Value::Varint(n)) => v.cached = n != 0,
            (5, Value::Bytes(_)) => v.started = true,
            (6, Value::Bytes(_)) => v.completed = true,
            (7, Value::Bytes(b)) => v.error = text(b),
            _ => {}
        }
    }
    Ok(v)
}

fn log(buf: &[u8]) -> Result<Log> {
    let mut l = Log::default();
    for (field, value) in fields(buf)? {
        match (field, value) {
            (1, Value::Bytes(b)) => l.vertex = text(b),
            (4, Value::Bytes(b)) => l.msg = b.to_vec(),
            _ => {}
        }
    }
    Ok(l)
}

/// Decodes the base64 `aux` of one `moby.buildkit.trace` line.
pub fn decode(aux_base64: &str) -> Result<Status> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(aux_base64).context("aux is not base64")?;
    let mut status = Status::default();
    for (field, value) in fields(&raw)? {
        match (field, value) {
            (1, Value::Bytes(b)) => status.vertexes.push(vertex(b)?),
            (3, Value::Bytes(b)) => status.logs.push(log(b)?),
            _ => {}
        }
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from the 20.10 engine: two vertexes of one build, the first
    /// cached and complete, the second started and complete.
    const CAPTURED: &str = "CoUBCkdzaGEyNTY6NmY3YTQ0Y2FkYzAyYWJmYmU1MGMyMWVlZThiNThhN2U4NmI3OTBmZDIyZDE3MmI2NWE4ZTkxNzE0ZGI5NmY1ZhoeRlJPTSBkb2NrZXIuaW8vcHlzdmMvdXY6MC4xMy45IAEqCwj+kLXYBhCznPklMgsI/pC12AYQkaz7JQqeAQpHc2hhMjU2OjZlMjU1OWEzM2QzZjMwMGRlMDQ0ZDVjYmVmNTI4M2MxZWI2YzE0MjQ3NzQ0Y2FjNmE2YWUxYjgwZDJkMWEyZjQaOVtzdGFnZS0wIDEvN10gRlJPTSBkb2NrZXIuaW8vcHlzdmMtYmVuY2gvcHl0aG9uLXNsaW06My4xMSoLCP6QtdgGEP7zmyMyCwj+kLXYBhCM6Zwm";

    #[test]
    fn decodes_what_the_engine_sent() {
        let status = decode(CAPTURED).unwrap();
        let names: Vec<&str> = status.vertexes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            ["FROM docker.io/pysvc/uv:0.13.9", "[stage-0 1/7] FROM docker.io/pysvc-bench/python-slim:3.11"]
        );
        assert!(status.vertexes[0].cached && status.vertexes[0].completed);
        assert!(!status.vertexes[1].cached && status.vertexes[1].started && status.vertexes[1].completed);
        assert!(status.vertexes[0].digest.starts_with("sha256:6f7a44cadc02a"));
        // Cut short, the message is refused rather than half-read.
        assert!(decode(&CAPTURED[..200]).is_err());
    }

    #[test]
    fn decodes_vertexes_and_logs() {
        // Hand-encoded: vertex {digest "d", name "[a 1/2] RUN x", cached, started, completed, error "boom"},
        // log {vertex "d", msg "hello\n"}.
        let mut vertex = vec![0x0a, 1, b'd', 0x1a, 13];
        vertex.extend_from_slice(b"[a 1/2] RUN x");
        vertex.extend_from_slice(&[0x20, 1, 0x2a, 2, 0x08, 5, 0x32, 2, 0x08, 6, 0x3a, 4]);
        vertex.extend_from_slice(b"boom");
        let mut log = vec![0x0a, 1, b'd', 0x18, 1, 0x22, 6];
        log.extend_from_slice(b"hello\n");
        let mut msg = vec![0x0a, vertex.len() as u8];
        msg.extend_from_slice(&vertex);
        msg.extend_from_slice(&[0x1a, log.len() as u8]);
        msg.extend_from_slice(&log);
        use base64::Engine as _;
        let status = decode(&base64::engine::general_purpose::STANDARD.encode(&msg)).unwrap();
        assert_eq!(
            status.vertexes,
            vec![Vertex {
                digest: "d".into(),
                name: "[a 1/2] RUN x".into(),
                cached: true,
                started: true,
                completed: true,
                error: "boom".into()
            }]
        );
        assert_eq!(status.logs, vec![Log { vertex: "d".into(), msg: b"hello\n".to_vec() }]);
    }
}
