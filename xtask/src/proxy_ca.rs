//! The CA bundle handed to the installers behind a TLS-inspecting proxy.
//!
//! uv 0.12 and later treat a non-empty `SSL_CERT_FILE` as the whole trust
//! store (its built-in roots are no longer used), and pip's `PIP_CERT` does
//! the same. A user who supplies only their company's CA would lose every
//! public host. So the bundle mounted into the build is the host's public
//! roots plus the user's file: each certificate once, the roots first in
//! the host's order, then the user's file as written.

use std::collections::BTreeSet;

/// Where distributions keep the bundle of public roots (Debian/Ubuntu,
/// Fedora/RHEL, Alpine/macOS/BSD).
const HOST_BUNDLES: [&str; 3] =
    ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The PEM certificate blocks of a bundle, in order, each as written.
fn certificates(pem: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else { break };
        let end = start + len + END.len();
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

/// A certificate's identity: its base64 body without whitespace.
fn key(block: &str) -> String {
    block.trim_start_matches(BEGIN).trim_end_matches(END).chars().filter(|c| !c.is_whitespace()).collect()
}

/// The public roots missing from the user's file, then the user's file.
/// Pure and deterministic: the same two inputs give the same bytes.
pub fn assemble(public_roots: &str, user: &str) -> String {
    let mut seen: BTreeSet<String> = certificates(user).into_iter().map(key).collect();
    let mut out = String::new();
    for block in certificates(public_roots) {
        if seen.insert(key(block)) {
            out.push_str(block);
            out.push('\n');
        }
    }
    out.push_str(user.trim_end());
    out.push('\n');
    out
}

/// The bundle for the build: the user's CA file completed with the host's
/// public roots. Without a readable host bundle, the user's file as is.
pub fn with_public_roots(user: Vec<u8>) -> Vec<u8> {
    let Ok(user_text) = String::from_utf8(user.clone()) else { return user };
    match HOST_BUNDLES.iter().find_map(|p| std::fs::read_to_string(p).ok()) {
        Some(roots) => assemble(&roots, &user_text).into_bytes(),
        None => {
            eprintln!(
                "note: no public CA bundle found on this host ({}); the proxy CA file is used alone, so uv trusts \
                 only the certificates in it",
                HOST_BUNDLES.join(", ")
            );
            user
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(body: &str) -> String {
        format!("{BEGIN}\n{body}\n{END}")
    }

    #[test]
    fn user_ca_is_appended_to_the_public_roots_once() {
        let (a, b, corp) = (cert("QUFB"), cert("QkJC"), cert("Q09SUA=="));
        let roots = format!("# public roots\n{a}\n{b}\n");
        let user = format!("# our proxy\n{corp}\n");
        let bundle = assemble(&roots, &user);
        assert_eq!(bundle, format!("{a}\n{b}\n# our proxy\n{corp}\n"));
        // Deterministic, and idempotent on its own output.
        assert_eq!(assemble(&roots, &user), bundle);
        assert_eq!(assemble(&roots, &bundle), bundle);
        // A root the user's file already holds (even wrapped differently) appears once.
        let user_with_root = format!("{corp}\n{}\n", cert("QU\nFB"));
        let bundle = assemble(&roots, &user_with_root);
        assert_eq!(certificates(&bundle).len(), 3, "{bundle}");
        assert!(bundle.starts_with(&b), "{bundle}");
    }

    #[test]
    fn a_user_file_that_is_the_whole_host_bundle_is_kept_as_is() {
        let roots = format!("{}\n{}\n", cert("QUFB"), cert("QkJC"));
        let user = format!("{roots}# marker\n");
        assert_eq!(assemble(&roots, &user), user);
    }
}
