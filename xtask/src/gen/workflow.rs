//! The CI workflow for GitHub Actions (`.github/workflows/ci.yaml`): the
//! README's commands (`setup`, `test`), then every service image built with
//! the registry cache (one job per service, from the manifests), pushed with
//! its cache on the default branch only. Actions are pinned by commit,
//! every job gets only the permissions it uses, and nothing from the event
//! is expanded into a shell line. Serialized from ordered YAML mappings, so
//! quoting cannot go wrong; `cargo xtask test` runs actionlint and zizmor on it.

use serde_yaml::{Mapping, Value};

use super::HEADER_NOTE;
use crate::manifest::Stack;

pub const WORKFLOW_PATH: &str = ".github/workflows/ci.yaml";

/// actions/checkout, pinned by commit (the tag it is, for the reader).
const CHECKOUT: (&str, &str) = ("actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803", "v6.1.0");
const RUNNER: &str = "ubuntu-24.04";
/// The registry images and their cache go to: GitHub's, under the
/// repository owner (lower-cased: image names must be).
const REGISTRY: &str = "ghcr.io/${GITHUB_REPOSITORY_OWNER,,}";

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect::<Mapping>())
}

fn s(text: &str) -> Value {
    Value::from(text)
}

fn step(name: &str, run: &str) -> Value {
    map(vec![("name", s(name)), ("run", s(run))])
}

fn checkout() -> Value {
    map(vec![
        ("name", s("checkout")),
        ("uses", s(CHECKOUT.0)),
        // No token left in .git/config for later steps to find.
        ("with", map(vec![("persist-credentials", Value::from(false))])),
    ])
}

/// A job on a fresh runner; `permissions` are all it may do.
fn job(name: &str, permissions: Vec<(&str, &str)>, extra: Vec<(&str, Value)>, steps: Vec<Value>) -> Value {
    let mut pairs = vec![
        ("name", s(name)),
        ("runs-on", s(RUNNER)),
        ("timeout-minutes", Value::from(90)),
        ("permissions", map(permissions.into_iter().map(|(k, v)| (k, s(v))).collect())),
    ];
    pairs.extend(extra);
    pairs.push(("steps", Value::Sequence(steps)));
    map(pairs)
}

/// The image jobs: one per service (a matrix from the manifests). `publish`
/// (the default branch) also pushes the images and their cache.
fn images_job(stack: &Stack, publish: bool) -> Value {
    let services: Vec<Value> = stack.services.iter().map(|svc| s(&svc.name)).collect();
    let cache = format!("{REGISTRY}/{}", stack.manifest.project);
    let mut build = format!("cargo xtask build-images \"$SERVICE\" --cache-from \"{cache}\"");
    if publish {
        build.push_str(&format!(" --cache-to \"{cache}\" --push \"{REGISTRY}\""));
    }
    let condition = if publish {
        "github.event_name == 'push' && github.ref_name == github.event.repository.default_branch"
    } else {
        "github.event_name == 'pull_request'"
    };
    let login = map(vec![
        ("name", s("log in to ghcr.io")),
        (
            "run",
            s("printf '%s' \"$GITHUB_TOKEN\" | docker login ghcr.io --username \"$GITHUB_ACTOR\" --password-stdin"),
        ),
        ("env", map(vec![("GITHUB_TOKEN", s("${{ secrets.GITHUB_TOKEN }}"))])),
    ]);
    let packages = if publish { "write" } else { "read" };
    job(
        if publish { "publish ${{ matrix.service }}" } else { "image ${{ matrix.service }}" },
        vec![("contents", "read"), ("packages", packages)],
        vec![
            ("needs", s("test")),
            ("if", s(condition)),
            ("strategy", map(vec![("matrix", map(vec![("service", Value::Sequence(services))]))])),
            ("env", map(vec![("SERVICE", s("${{ matrix.service }}"))])),
        ],
        vec![
            checkout(),
            step("cargo xtask setup --yes", "cargo xtask setup --yes"),
            login,
            step(
                if publish { "build and push with the registry cache" } else { "build with the registry cache" },
                &build,
            ),
        ],
    )
}

pub fn workflow(stack: &Stack) -> String {
    let test = job(
        "setup and test",
        vec![("contents", "read")],
        vec![],
        vec![
            checkout(),
            step("cargo xtask setup --yes", "cargo xtask setup --yes"),
            step("cargo xtask test", "cargo xtask test"),
        ],
    );
    let doc = map(vec![
        ("name", s("ci")),
        ("on", map(vec![("push", Value::Null), ("pull_request", Value::Null)])),
        // Nothing by default: each job names what it needs.
        ("permissions", Value::Mapping(Mapping::new())),
        ("concurrency", map(vec![("group", s("ci-${{ github.ref }}")), ("cancel-in-progress", Value::from(true))])),
        ("env", map(vec![("CARGO_TERM_COLOR", s("never"))])),
        ("jobs", map(vec![("test", test), ("images", images_job(stack, false)), ("publish", images_job(stack, true))])),
    ]);
    let body = serde_yaml::to_string(&doc).expect("YAML values serialize");
    // Why each permission is there (comments cannot be serialized).
    let body = body
        .replace("contents: read\n", "contents: read # checkout\n")
        .replace("packages: read\n", "packages: read # pull the build cache\n")
        .replace("packages: write\n", "packages: write # push the images and their build cache\n");
    format!(
        "# {HEADER_NOTE}\n# source: stack.yaml and services/*/service.yaml (one image job per service)\n\
         # {} is {}\n{body}",
        CHECKOUT.0, CHECKOUT.1
    )
}
