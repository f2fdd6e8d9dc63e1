//! `cargo xtask build-images` against the real engine and BuildKit. Every
//! test builds in its own scratch copy (`common::TestStack`), so the images
//! are named after its own project and removed afterwards.

mod common;

use std::io::Read;

use common::*;

fn labels(image: &str) -> serde_json::Value {
    docker_json(&["image", "inspect", "-f", "{{json .Config.Labels}}", image])
}

#[test]
fn images_are_tagged_labelled_non_root_and_rebuilt_only_when_stale() {
    let _guard = serial();
    let stack = TestStack::new("tags");
    let first: serde_json::Value = serde_json::from_str(&stack.ok(&["build-images", "--json"])).unwrap();
    let rev = docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.opencontainers.image.version\"}}",
        &stack.image("api-server"),
    ]);
    for service in ["api-server", "search-worker"] {
        let entry = first.as_array().unwrap().iter().find(|e| e["service"] == service).expect("service in the report");
        assert!(entry["size_bytes"].as_i64().unwrap() > 10_000_000, "size reported: {entry}");
        let image = stack.image(service);
        let tags = docker(&["image", "inspect", "-f", "{{join .RepoTags \" \"}}", &image]);
        assert!(tags.contains(&format!("{}/{service}:{rev}", stack.project)), "versioned tag missing: {tags}");
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
        assert_eq!(docker_run_ok(&["--entrypoint", "id", &image, "-u"]), "10001");
        // The app cannot rewrite its own code or environment.
        let write = docker_run(&["--entrypoint", "touch", &image, "/opt/venv/bin/x"]);
        assert!(!write.status.success(), "the non-root user must not write to the venv");
    }

    // Nothing changed: nothing is rebuilt.
    let second: serde_json::Value = serde_json::from_str(&stack.ok(&["build-images", "--json"])).unwrap();
    for entry in second.as_array().unwrap() {
        assert_eq!(entry["built"], false, "rebuilt without a change: {entry}");
    }
    let table = stack.ok(&["build-images"]);
    assert!(table.contains("up to date") && table.contains("SIZE"), "{table}");
}

/// The proxy CA reaches the installer during the build and no layer; nor
/// does any secret.
#[test]
fn proxy_ca_and_secrets_never_land_in_a_layer() {
    let _guard = serial();
    let stack = TestStack::new("layers");
    let host_bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").expect("the host has a CA bundle");
    let marker = format!("# pysvc-proxy-ca-marker-{}", std::process::id());
    let mut bundle = host_bundle.clone();
    bundle.extend_from_slice(format!("\n{marker}\n").as_bytes());
    let ca = std::env::temp_dir().join(format!("proxy-ca-{}.crt", std::process::id()));
    std::fs::write(&ca, &bundle).unwrap();

    // --force --no-cache with a new CA: the install step reruns with it
    // mounted and must succeed (BuildKit keys its cache on the mount's
    // content, buildah does not: --no-cache makes it run on every engine).
    let out = stack.run_env(
        &["build-images", "--force", "--no-cache", "--json", "api-server"],
        &[("PYSVC_PROXY_CA", ca.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["built"], true);
    assert!(report[0]["cached"].as_u64().unwrap() < report[0]["steps"].as_u64().unwrap());

    // No secret either: the random database password `.env` holds.
    let password = stack.env_value("POSTGRES_PASSWORD");
    assert!(password.len() >= 16, "a real password to look for");
    let mut layers = 0;
    let mut files = 0;
    for data in common::image_layers(&stack.image("api-server")) {
        layers += 1;
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

/// The layer reader follows manifest.json in both `docker save` formats
/// (classic `<id>/layer.tar`; OCI layout with a gzip blob) and refuses an
/// archive that names no layer, so the scan above cannot pass on nothing.
#[test]
fn layer_reader_reads_both_save_formats() {
    fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }
    let layer = tar_of(&[("etc/hello", b"hi".to_vec())]);
    let classic =
        tar_of(&[("manifest.json", br#"[{"Layers":["abc/layer.tar"]}]"#.to_vec()), ("abc/layer.tar", layer.clone())]);
    assert_eq!(layers_of_archive(&classic), std::slice::from_ref(&layer));
    let mut gzip = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut gzip.stdin.take().unwrap(), &layer).unwrap();
    let gz = gzip.wait_with_output().unwrap().stdout;
    let oci = tar_of(&[
        ("index.json", b"{}".to_vec()),
        ("manifest.json", br#"[{"Layers":["blobs/sha256/1234"]}]"#.to_vec()),
        ("blobs/sha256/1234", gz),
    ]);
    assert_eq!(layers_of_archive(&oci), [layer]);
    let empty = tar_of(&[("manifest.json", br#"[{"Layers":[]}]"#.to_vec())]);
    assert!(std::panic::catch_unwind(|| layers_of_archive(&empty)).is_err(), "no layer must fail");
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

/// `--push` against a real registry: Debian's docker-registry (installed by
/// `cargo xtask setup --yes`), started by the test on a free port.
#[test]
fn push_reaches_a_real_registry() {
    let _guard = serial();
    let registry = Registry::start();
    let stack = TestStack::new("push");
    let out = stack.ok(&["build-images", "--push", &registry.addr]);
    assert!(out.contains(&format!("pushed {}/{}", registry.addr, stack.image("api-server"))), "{out}");
    for service in ["api-server", "search-worker"] {
        let path = format!("/v2/{}/{service}/tags/list", stack.project);
        let (status, body) = http_at(&registry.addr, "GET", &path, None).unwrap();
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
    let stack = TestStack::new("broken");
    // Hashes that no file has, in the lock: the install step must fail. uv
    // checks hashes of what it downloads, not of what a warm venv cache
    // already holds, and the venv cache of a service is shared by every
    // checkout on the engine; `bytecode: false` gives this build a venv
    // cache of its own, which never gets psycopg-pool (a failed sync
    // installs nothing), so the download happens on every run.
    let manifest = stack.dir.join("services/search-worker/service.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}bytecode: false\n")).unwrap();
    let path = stack.dir.join("uv.lock");
    let lock = std::fs::read_to_string(&path).unwrap();
    let start = lock.find("\nname = \"psycopg-pool\"\n").expect("psycopg-pool is locked");
    let end = start + lock[start..].find("\n[[package]]").unwrap();
    let mut block = lock[start..end].to_owned();
    let mut from = 0;
    while let Some(i) = block[from..].find("sha256:") {
        let at = from + i + "sha256:".len();
        block.replace_range(at..at + 64, &"0".repeat(64));
        from = at + 64;
    }
    std::fs::write(&path, format!("{}{block}{}", &lock[..start], &lock[end..])).unwrap();
    let out = stack.run(&["build-images", "search-worker"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the build must fail");
    assert!(err.contains(&format!("building {} failed", stack.image("search-worker"))), "{err}");
    assert!(err.contains("step: [runtime ") && err.contains("uv pip sync"), "the failed step is named: {err}");
    // uv's hash mismatch: the hashes planted above, and what the file has.
    assert!(err.contains("last log lines:") && err.contains(&"0".repeat(64)), "the step's log is shown: {err}");
}

/// Each image's context is its own: a change in search-worker does not
/// rebuild api-server, and a change in shared code rebuilds both.
#[test]
fn a_change_rebuilds_only_the_images_that_contain_it() {
    let _guard = serial();
    let stack = TestStack::new("ctx");
    let scratch = &stack.dir;
    let build = || -> serde_json::Value {
        let out = stack.run(&["build-images", "--json"]);
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
}

/// The pinned uv the xtask installs into this checkout's target/tools.
fn uv() -> std::path::PathBuf {
    let uv = root().join("target/tools/uv-0.13.9/bin/uv");
    assert!(uv.is_file(), "the pinned uv is installed by the first xtask command that needs it");
    uv
}

/// A dependency added to search-worker the uv way (`uv add --package`,
/// then `cargo xtask gen`) changes search-worker's image and nothing of
/// api-server's: same exported requirements, same inputs label, not rebuilt.
#[test]
fn a_dependency_added_to_search_worker_rebuilds_only_search_worker() {
    let _guard = serial();
    let stack = TestStack::new("deps");
    let report = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let entry = |r: &serde_json::Value, service: &str| {
        r.as_array().unwrap().iter().find(|e| e["service"] == service).unwrap().clone()
    };
    let inputs = |service: &str| labels(&stack.image(service))["pysvc.inputs"].as_str().unwrap().to_owned();
    report(stack.run(&["build-images", "--json"]));
    let (api_before, worker_before) = (inputs("api-server"), inputs("search-worker"));
    let api_requirements = std::fs::read(stack.dir.join("docker/api-server.requirements.txt")).unwrap();

    let added = std::process::Command::new(uv())
        .args(["add", "--no-sync", "--package", "search-worker", "six"])
        .current_dir(&stack.dir)
        .output()
        .unwrap();
    assert!(added.status.success(), "uv add: {}", String::from_utf8_lossy(&added.stderr));
    // The lock changed and the committed exports follow it only after gen.
    let stale = stack.run(&["gen", "--check"]);
    assert!(!stale.status.success(), "gen --check must see the export that no longer matches uv.lock");
    assert!(String::from_utf8_lossy(&stale.stderr).contains("docker/search-worker.requirements.txt"));
    stack.ok(&["gen"]);
    let worker_requirements = std::fs::read_to_string(stack.dir.join("docker/search-worker.requirements.txt")).unwrap();
    assert!(worker_requirements.contains("\nsix=="), "{worker_requirements}");
    assert_eq!(std::fs::read(stack.dir.join("docker/api-server.requirements.txt")).unwrap(), api_requirements);

    let second = report(stack.run(&["build-images", "--json"]));
    assert_eq!(entry(&second, "api-server")["built"], false, "api-server rebuilt for search-worker's dependency");
    assert_eq!(inputs("api-server"), api_before, "api-server's image inputs changed");
    assert_eq!(entry(&second, "search-worker")["built"], true, "{second}");
    assert_ne!(inputs("search-worker"), worker_before);
    // Its image has the new dependency; api-server's has not.
    let import = |service: &str| {
        docker_run(&["--entrypoint", "python", &stack.image(service), "-c", "import six"]).status.success()
    };
    assert!(import("search-worker") && !import("api-server"));
}

/// `installer: pip` installs the same exported requirements (the design
/// notes' rollback to pip): the image imports its dependencies, and pip has
/// left the venv.
#[test]
fn pip_installs_the_same_exported_requirements() {
    let _guard = serial();
    let stack = TestStack::new("pip");
    let manifest = stack.dir.join("services/search-worker/service.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}installer: pip\n")).unwrap();
    stack.ok(&["gen"]);
    let dockerfile = std::fs::read_to_string(stack.dir.join("docker/search-worker.Dockerfile")).unwrap();
    assert!(dockerfile.contains("pip install --disable-pip-version-check --require-hashes"), "{dockerfile}");
    assert!(dockerfile.contains("COPY docker/search-worker.requirements.txt"), "{dockerfile}");
    let out = stack.run(&["build-images", "--json", "search-worker"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let image = stack.image("search-worker");
    let python = |code: &str| docker_run(&["--entrypoint", "python", &image, "-c", code]).status.success();
    assert!(python("import confluent_kafka, psycopg, psycopg_pool, search_worker.main"), "dependencies missing");
    assert!(!python("import pip"), "pip must have removed itself");
}

/// A worker service `name` in the scratch copy that depends on psycopg2,
/// which has no Linux wheel and builds from source (it needs `pg_config`,
/// a C compiler and Python's headers), with `manifest_lines` appended to its
/// `service.yaml`; its files generated.
fn psycopg2_service(stack: &TestStack, name: &str, manifest_lines: &str) {
    stack.ok(&["new-service", name, "--kind", "worker"]);
    let added = std::process::Command::new(uv())
        .args(["add", "--no-sync", "--package", name, "psycopg2==2.9.10"])
        .current_dir(&stack.dir)
        .output()
        .unwrap();
    assert!(added.status.success(), "uv add: {}", String::from_utf8_lossy(&added.stderr));
    let manifest = stack.dir.join(format!("services/{name}/service.yaml"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}{manifest_lines}")).unwrap();
    stack.ok(&["gen"]);
    let requirements = std::fs::read_to_string(stack.dir.join(format!("docker/{name}.requirements.txt"))).unwrap();
    assert!(requirements.contains("\npsycopg2==2.9.10"), "{requirements}");
}

/// `build_packages`: a builder stage compiles psycopg2 with them; the
/// runtime image imports it, with only the runtime library (libpq5), and
/// has no compiler and no headers.
#[test]
fn build_packages_compile_a_dependency_and_stay_out_of_the_runtime_image() {
    let _guard = serial();
    let stack = TestStack::new("buildpkgs");
    let packages = "build_packages: [gcc, libc6-dev, libpq-dev, python3-dev]\nruntime_packages: [libpq5]\n";
    psycopg2_service(&stack, "pgsrc", packages);
    let dockerfile = std::fs::read_to_string(stack.dir.join("docker/pgsrc.Dockerfile")).unwrap();
    assert!(dockerfile.contains("AS builder") && dockerfile.contains("COPY --from=builder /opt/venv"), "{dockerfile}");
    let out = stack.run(&["build-images", "--json", "pgsrc"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let image = stack.image("pgsrc");
    let run = |entrypoint: &str, args: &[&str]| {
        let out = docker_run(&[&["--entrypoint", entrypoint, image.as_str()], args].concat());
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let (ok, libpq) = run("python", &["-c", "import psycopg2, pgsrc; print(psycopg2.__libpq_version__)"]);
    assert!(ok && libpq.parse::<u32>().is_ok_and(|v| v >= 150000), "psycopg2 imports against libpq 15: {libpq}");
    let (found, compilers) = run("sh", &["-c", "command -v gcc cc x86_64-linux-gnu-gcc cpp"]);
    assert!(!found && compilers.is_empty(), "a compiler in the runtime image: {compilers}");
    let (_, headers) = run(
        "sh",
        &["-c", "find / -xdev \\( -name Python.h -o -name libpq-fe.h -o -name stdio.h \\) -print; ls -d /usr/include/postgresql"],
    );
    assert!(headers.is_empty(), "headers in the runtime image: {headers}");
    let (installed, _) = run("dpkg-query", &["-W", "-f", "${Status}", "libpq5"]);
    assert!(installed, "the runtime package is installed");
    let (dev, _) = run("dpkg-query", &["-W", "-f", "${Status}", "libpq-dev"]);
    assert!(!dev, "a build package is in the runtime image");
}

/// The same service without `build_packages`: the build fails, and the
/// error says which package and what to declare (and the wheel instead).
#[test]
fn without_build_packages_a_compiled_dependency_fails_with_a_hint() {
    let _guard = serial();
    let stack = TestStack::new("nobuildpkgs");
    psycopg2_service(&stack, "pgnobuild", "runtime_packages: [libpq5]\n");
    let out = stack.run(&["build-images", "pgnobuild"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the build must fail");
    assert!(err.contains(&format!("building {} failed", stack.image("pgnobuild"))), "{err}");
    assert!(err.contains("hint: psycopg2 is built from source"), "the package is named: {err}");
    assert!(err.contains("services/pgnobuild/service.yaml, then `cargo xtask gen`"), "{err}");
    assert!(err.contains("build_packages: [gcc, libc6-dev, libpq-dev"), "{err}");
    assert!(err.contains("Or depend on a wheel instead: psycopg2-binary"), "{err}");
}
