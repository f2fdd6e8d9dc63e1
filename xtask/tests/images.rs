//! `cargo xtask build-images` against the real engine and BuildKit.

mod common;

use std::io::Read;

use common::*;

fn labels(image: &str) -> serde_json::Value {
    docker_json(&["image", "inspect", "-f", "{{json .Config.Labels}}", image])
}

#[test]
fn images_are_tagged_labelled_non_root_and_rebuilt_only_when_stale() {
    let _guard = serial();
    let first: serde_json::Value = serde_json::from_str(&xtask_ok(&["build-images", "--json"])).unwrap();
    let rev = docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.opencontainers.image.version\"}}",
        "pysvc/api-server:latest",
    ]);
    for service in ["api-server", "search-worker"] {
        let entry = first.as_array().unwrap().iter().find(|e| e["service"] == service).expect("service in the report");
        assert!(entry["size_bytes"].as_i64().unwrap() > 10_000_000, "size reported: {entry}");
        let image = format!("pysvc/{service}:latest");
        let tags = docker(&["image", "inspect", "-f", "{{join .RepoTags \" \"}}", &image]);
        assert!(tags.contains(&format!("pysvc/{service}:{rev}")), "versioned tag missing: {tags}");
        let l = labels(&image);
        assert_eq!(l["org.opencontainers.image.title"], service);
        for key in [
            "org.opencontainers.image.source",
            "org.opencontainers.image.revision",
            "org.opencontainers.image.created",
            "pysvc.inputs",
        ] {
            assert!(l[key].as_str().is_some_and(|v| !v.is_empty()), "label {key} missing: {l}");
        }
        assert_eq!(docker(&["image", "inspect", "-f", "{{.Config.User}}", &image]), "10001:10001");
        assert_eq!(docker(&["run", "--rm", "--entrypoint", "id", &image, "-u"]), "10001");
        // The app cannot rewrite its own code or environment.
        let write = std::process::Command::new("docker")
            .args(["run", "--rm", "--entrypoint", "touch", &image, "/opt/venv/bin/x"])
            .output()
            .unwrap();
        assert!(!write.status.success(), "the non-root user must not write to the venv");
    }

    // Nothing changed: nothing is rebuilt.
    let second: serde_json::Value = serde_json::from_str(&xtask_ok(&["build-images", "--json"])).unwrap();
    for entry in second.as_array().unwrap() {
        assert_eq!(entry["built"], false, "rebuilt without a change: {entry}");
    }
    let table = xtask_ok(&["build-images"]);
    assert!(table.contains("up to date") && table.contains("SIZE"), "{table}");
}

/// The proxy CA reaches the installer during the build and no layer; nor
/// does any secret.
#[test]
fn proxy_ca_and_secrets_never_land_in_a_layer() {
    let _guard = serial();
    let host_bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").expect("the host has a CA bundle");
    let marker = format!("# pysvc-proxy-ca-marker-{}", std::process::id());
    let mut bundle = host_bundle.clone();
    bundle.extend_from_slice(format!("\n{marker}\n").as_bytes());
    let ca = std::env::temp_dir().join(format!("proxy-ca-{}.crt", std::process::id()));
    std::fs::write(&ca, &bundle).unwrap();

    // --force with a new CA: the install step reruns with it mounted (the
    // mount's content is part of BuildKit's cache key) and must succeed.
    let out =
        xtask_env(&["build-images", "--force", "--json", "api-server"], &[("PYSVC_PROXY_CA", ca.to_str().unwrap())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["built"], true);
    assert!(report[0]["cached"].as_u64().unwrap() < report[0]["steps"].as_u64().unwrap());

    // No secret either: the random database password `.env` holds.
    let env = std::fs::read_to_string(root().join(".env")).unwrap();
    let password = env.lines().find_map(|l| l.strip_prefix("POSTGRES_PASSWORD=")).unwrap().trim().to_owned();
    assert!(password.len() >= 16, "a real password to look for");
    let saved = std::process::Command::new("docker").args(["save", "pysvc/api-server:latest"]).output().unwrap();
    assert!(saved.status.success());
    let mut outer = tar::Archive::new(saved.stdout.as_slice());
    let mut layers = 0;
    let mut files = 0;
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if !path.ends_with("layer.tar") {
            continue;
        }
        layers += 1;
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let mut layer = tar::Archive::new(data.as_slice());
        for file in layer.entries().unwrap() {
            let mut file = file.unwrap();
            let name = file.path().unwrap().to_string_lossy().into_owned();
            files += 1;
            assert!(!name.contains("proxy-ca"), "{name} is in a layer");
            assert!(
                !name.contains(".cache/uv") && !name.contains(".cache/pip"),
                "installer cache {name} is in a layer"
            );
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            assert!(
                !content.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "the proxy CA bundle leaked into {name}"
            );
            assert!(content != host_bundle, "the host CA bundle is in a layer at {name}");
            assert!(
                !content.windows(password.len()).any(|w| w == password.as_bytes()),
                "the database password from .env is in a layer at {name}"
            );
        }
    }
    assert!(layers >= 3 && files > 1000, "scanned {layers} layers, {files} files");
    std::fs::remove_file(ca).ok();
}

#[test]
fn unreachable_engine_gets_one_clear_sentence() {
    let _guard = serial();
    let out = xtask_env(&["build-images"], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"), "{err}");
    assert!(err.contains("cargo xtask setup --yes"), "{err}");
}

/// `--push` against a real registry (Debian's docker-registry, started by
/// `cargo xtask setup --yes --registry`).
#[test]
fn push_reaches_a_real_registry() {
    let _guard = serial();
    let out = xtask_ok(&["build-images", "--push", "127.0.0.1:5000"]);
    assert!(out.contains("pushed 127.0.0.1:5000/pysvc/api-server:latest"), "{out}");
    for service in ["api-server", "search-worker"] {
        let (status, body) = http_at("127.0.0.1:5000", "GET", &format!("/v2/pysvc/{service}/tags/list"), None).unwrap();
        assert_eq!(status, 200, "{body}");
        let tags = json(&body)["tags"].clone();
        assert!(tags.as_array().unwrap().iter().any(|t| t == "latest"), "{body}");
        assert!(tags.as_array().unwrap().len() >= 2, "the versioned tag is pushed too: {body}");
    }
}

/// A failing build step: its name and its last log lines, non-zero exit.
#[test]
fn a_failing_step_is_named_with_its_log() {
    let _guard = serial();
    let scratch = scratch_copy("broken", &[("IMAGE_PREFIX=pysvc", "IMAGE_PREFIX=pysvc-broken")]);
    // A pin that does not exist: the install step must fail.
    std::fs::write(
        scratch.join("services/search-worker/requirements.lock"),
        "six==0.0.0 \\\n    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
    )
    .unwrap();
    let out = xtask_env(&["build-images", "search-worker"], &[("PYSVC_ROOT", scratch.to_str().unwrap())]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the build must fail");
    assert!(err.contains("building pysvc-broken/search-worker:latest failed"), "{err}");
    assert!(err.contains("step: [runtime ") && err.contains("uv pip sync"), "the failed step is named: {err}");
    assert!(err.contains("last log lines:") && err.contains("six"), "the step's log is shown: {err}");
    std::fs::remove_dir_all(&scratch).ok();
}

/// Each image's context is its own: a change in search-worker does not
/// rebuild api-server, and a change in shared code rebuilds both.
#[test]
fn a_change_rebuilds_only_the_images_that_contain_it() {
    let _guard = serial();
    let scratch = scratch_copy("ctx", &[("IMAGE_PREFIX=pysvc", "IMAGE_PREFIX=pysvc-ctx")]);
    let build = || -> serde_json::Value {
        let out = xtask_env(&["build-images", "--json"], &[("PYSVC_ROOT", scratch.to_str().unwrap())]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let built = |report: &serde_json::Value, service: &str| {
        report.as_array().unwrap().iter().find(|e| e["service"] == service).unwrap()["built"].as_bool().unwrap()
    };
    build();
    let touch = |rel: &str| {
        let path = scratch.join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text + "\n# changed by a test\n").unwrap();
    };
    touch("services/search-worker/search_worker/search.py");
    // Files outside every context change nothing.
    std::fs::write(scratch.join("services/search-worker/tests/test_new.py"), "# not in the image\n").unwrap();
    let report = build();
    assert!(built(&report, "search-worker"), "{report}");
    assert!(!built(&report, "api-server"), "api-server was rebuilt for a search-worker change: {report}");
    touch("services/shared/pysvc_common/config.py");
    let report = build();
    assert!(built(&report, "search-worker") && built(&report, "api-server"), "{report}");
    std::fs::remove_dir_all(&scratch).ok();
}
