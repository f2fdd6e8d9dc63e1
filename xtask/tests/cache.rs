//! The registry build cache (`build-images --cache-to/--cache-from`) against
//! a real registry, consumed by a truly fresh engine: what a new CI runner
//! does. The shared engine's build cache is never pruned: the fresh state
//! is a second engine (`common::FreshEngine`) with nothing but the base
//! images in it.

mod common;

use common::*;

/// The `--json` report (a first run in a scratch copy may print what it
/// set up before it).
fn report(out: &str) -> Vec<serde_json::Value> {
    let start = out.find("\n[").map(|i| i + 1).unwrap_or(0);
    serde_json::from_str::<serde_json::Value>(&out[start..]).unwrap().as_array().unwrap().clone()
}

fn layers(docker: &dyn Fn(&[&str]) -> String, image: &str) -> String {
    docker(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", image])
}

#[test]
fn a_fresh_engine_reuses_every_layer_of_an_unchanged_lock_from_the_registry() {
    let _guard = serial();
    let registry = Registry::start();
    let stack = TestStack::new("cache");
    let repo = format!("{}/{}-cache", registry.addr, stack.project);

    // The cache as CI's last run on the default branch leaves it.
    let produced = report(&stack.ok(&["build-images", "--json", "--cache-to", &repo]));
    for service in ["api-server", "search-worker"] {
        let (status, body) =
            http_at(&registry.addr, "GET", &format!("/v2/{}-cache/{service}/tags/list", stack.project), None).unwrap();
        // Docker: the image with its inline cache, tagged `cache`; Podman:
        // buildah's layer cache, a tag per step.
        let tags = json(&body)["tags"].as_array().map(Vec::len).unwrap_or(0);
        assert!(status == 200 && tags > 0, "{service}: the cache is pushed: {body}");
        let config = docker(&["image", "inspect", "-f", "{{.Id}}", &stack.image(service)]);
        assert!(!config.is_empty());
    }

    // A fresh runner: no service image, no build cache; only the base
    // images a runner would pull (`build-images` first checks all four).
    let fresh = FreshEngine::start(&registry);
    let bases: Vec<String> =
        ["PYTHON_BASE_IMAGE", "UV_IMAGE", "POSTGRES_IMAGE", "KAFKA_IMAGE"].iter().map(|k| stack.env_value(k)).collect();
    fresh.load(&bases.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(fresh.docker(&["images", "-q", &stack.image("api-server")]).is_empty());
    let out =
        stack.run_env(&["build-images", "--json", "--cache-from", &repo], &[("DOCKER_HOST", fresh.host.as_str())]);
    let rebuilt = report(&expect_ok("build-images --cache-from on a fresh engine", out));
    let podman = engine_is_podman();
    for entry in &rebuilt {
        let service = entry["service"].as_str().unwrap();
        assert_eq!(entry["built"], true, "{entry}");
        // Podman applies the build's labels (revision, created, inputs) as
        // LABEL steps of its own, in an order it does not keep, so those run
        // again: they make no layer. Every other step comes from the registry.
        let ran: Vec<&str> = entry["ran"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let layers_ran: Vec<&&str> = ran.iter().filter(|s| !(podman && s.contains("] LABEL "))).collect();
        assert!(layers_ran.is_empty(), "{service}: every step must come from the registry: {entry}");
        let image = stack.image(service);
        // The same image: the same layers, and the same SBOM in it.
        let fresh_docker = |args: &[&str]| fresh.docker(args);
        let shared_docker = |args: &[&str]| docker(args);
        assert_eq!(layers(&fresh_docker, &image), layers(&shared_docker, &image), "{service}: layers differ");
        let written = std::fs::read_to_string(stack.dir.join(format!("target/sbom/{service}.cdx.json"))).unwrap();
        let inside = docker_run_ok(&["--entrypoint", "cat", &image, &format!("/usr/share/sbom/{service}.cdx.json")]);
        assert_eq!(inside.trim_end(), written.trim_end(), "{service}: the SBOM in the image is the one written");
        let sbom = json(&written);
        assert_eq!(sbom["specVersion"], "1.6");
        let base_id = docker(&["image", "inspect", "-f", "{{.Id}}", &bases[0]]);
        let base = sbom["components"].as_array().unwrap().iter().find(|c| c["bom-ref"] == "base-image").unwrap();
        assert_eq!(format!("sha256:{}", base["hashes"][0]["content"].as_str().unwrap()), base_id, "{base}");
    }
    let before = produced.iter().map(|e| e["service"].clone()).collect::<Vec<_>>();
    assert_eq!(before.len(), rebuilt.len());

    // A cache that is missing, or a registry that does not answer, is a
    // warning: the build goes on without it.
    let out = stack.run(&[
        "build-images",
        "--json",
        "--force",
        "search-worker",
        "--cache-from",
        &format!("{}/no-such-cache", registry.addr),
        "--cache-from",
        &format!("127.0.0.1:{}/nothing-listens", free_port()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    if podman {
        // buildah asks a cache repository only for steps it has no layer
        // for (here it has them all) and is silent about a missing one.
        return;
    }
    assert!(err.contains("no-such-cache/search-worker:cache") && err.contains("built without that cache"), "{err}");
    assert!(err.contains("nothing-listens/search-worker:cache"), "{err}");
}
