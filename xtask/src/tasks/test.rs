//! `cargo xtask test`: every check CI runs, in order, each a prepared command
//! with the message to show when it fails. `--keep-going` runs them all and
//! reports the failures together.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::dotenv::DotEnv;
use crate::gen::{self, Mode};
use crate::manifest::{Installer, Service, Stack};
use crate::prepared::{Prepared, Repo};
use crate::scratch::Scratch;
use crate::util::write_atomic;
use crate::{lockfile, tools, workspace};

/// Run every check: formatting, clippy, generated files, hadolint, compose config, Kubernetes manifests (offline), pytest, cargo test.
#[derive(Args, Debug)]
pub struct Test {
    /// Run every step even after a failure; report all failures at the end.
    #[arg(long)]
    pub keep_going: bool,
    /// Skip `cargo test` (the integration tests need a running engine).
    #[arg(long)]
    pub no_cargo_test: bool,
    /// Only the engine's smoke: base images, then the integration tests that
    /// build with a proxy CA and scan every layer, bring a stack up, answer a
    /// search, take it down and up, and apply a dev edit (what `.ci/run`
    /// runs on the engines besides the default one).
    #[arg(long, conflicts_with = "no_cargo_test")]
    pub smoke: bool,
    /// Only the live Kubernetes test (xtask/tests/cluster.rs): the local node
    /// (`cargo xtask cluster up`, started if it is not running), the stack
    /// deployed into a namespace of its own, a rolling update and a deleted
    /// worker pod under searches. Not part of the default run (README says why).
    #[arg(long, conflicts_with_all = ["no_cargo_test", "smoke"])]
    pub cluster: bool,
}

/// The integration tests of `--smoke`: (test file, test name).
const SMOKE: [(&str, &str); 3] = [
    ("images", "proxy_ca_and_secrets_never_land_in_a_layer"),
    ("stack", "a_search_flows_through_broker_and_worker_and_survives_down_up"),
    ("dev", "dev_applies_edits_live_reports_errors_and_leaves_the_stack_as_up_does"),
];

/// One check: what it is, the fix to show when it fails, and how to run it.
struct Step<'a> {
    name: &'static str,
    fix: &'static str,
    run: Box<dyn Fn() -> Result<()> + 'a>,
}

impl<'a> Step<'a> {
    fn new(name: &'static str, fix: &'static str, run: impl Fn() -> Result<()> + 'a) -> Step<'a> {
        Step { name, fix, run: Box::new(run) }
    }
}

impl Test {
    pub fn run(self, repo: &Repo) -> Result<()> {
        // The manifests, loaded once; a step that needs them fails with their error.
        let loaded = repo.stack();
        let stack = || loaded.as_ref().map_err(|e| anyhow!("{e:#}"));
        let (sh, root) = (&repo.sh, repo.root.as_path());
        if self.smoke {
            return run_steps(&smoke_steps(repo, &loaded), self.keep_going);
        }
        if self.cluster {
            let mut steps = engine_steps(repo, &loaded);
            steps.truncate(1);
            steps.push(Step::new("the stack on the local Kubernetes node", "see the test's output above", || {
                Ok(cmd!(sh, "cargo test -p xtask --test cluster -- --ignored --test-threads 1").run()?)
            }));
            return run_steps(&steps, self.keep_going);
        }
        let mut steps = vec![
            Step::new("rustfmt", "run `cargo fmt`", || Ok(cmd!(sh, "cargo fmt --all --check").run()?)),
            Step::new("clippy", "fix the warnings above (CI denies every clippy warning)", || {
                Ok(cmd!(sh, "cargo clippy --workspace --all-targets --quiet -- -D warnings").run()?)
            }),
            Step::new(
                "uv.lock and generated files",
                "run `cargo xtask lock` if uv.lock is stale (a pyproject.toml changed), else `cargo xtask gen`; commit the result",
                || {
                    stack()?;
                    lockfile::generate(sh, root, Mode::Check)?;
                    Ok(())
                },
            ),
            Step::new(
                "hadolint",
                "fix the Dockerfile generator (xtask/src/gen/dockerfile.rs) or document the ignored rule in .hadolint.yaml",
                || hadolint(sh, stack()?),
            ),
            Step::new("compose config", "fix the compose generator (xtask/src/gen/compose.rs)", || {
                // A throwaway password: the check is about the file's shape.
                Ok(cmd!(sh, "docker compose --env-file .env.example config --quiet")
                    .env("POSTGRES_PASSWORD", "config-check")
                    .run()?)
            }),
            Step::new(
                "kubernetes manifests",
                "fix the Kubernetes renderer (xtask/src/gen/k8s.rs), or annotate a policy skip with its reason",
                || kubernetes(sh, stack()?),
            ),
            Step::new(
                "CI workflow (actionlint, zizmor)",
                "fix the workflow generator (xtask/src/gen/workflow.rs), then `cargo xtask gen`",
                || workflow(sh, root),
            ),
            Step::new(
                "SBOMs (CycloneDX 1.6 schema)",
                "fix the SBOM generator (xtask/src/gen/sbom.rs) or the requirements file named above",
                || sboms(sh, stack()?),
            ),
            Step::new(
                "pytest and mypy in the workspace environment (uv sync --locked)",
                "fix the Python tests or type errors above (or `cargo xtask lock` if uv.lock is stale)",
                || pytest(sh, stack()?),
            ),
        ];
        if !self.no_cargo_test {
            steps.extend(engine_steps(repo, &loaded));
        }
        run_steps(&steps, self.keep_going)
    }
}

fn run_steps(steps: &[Step], keep_going: bool) -> Result<()> {
    let mut failures = Vec::new();
    for step in steps {
        eprintln!("==> {}", step.name);
        if let Err(err) = (step.run)() {
            eprintln!("FAILED: {}: {err:#}\n  fix: {}", step.name, step.fix);
            failures.push(step.name);
            if !keep_going {
                break;
            }
        }
    }
    if !failures.is_empty() {
        bail!("failed steps: {}", failures.join(", "));
    }
    eprintln!("all {} steps passed", steps.len());
    Ok(())
}

/// `--smoke`: the engine step, then the smoke tests, one `cargo test` each.
fn smoke_steps<'a>(repo: &'a Repo, loaded: &'a Result<Stack>) -> Vec<Step<'a>> {
    let mut steps = engine_steps(repo, loaded);
    steps.truncate(1);
    for (file, name) in SMOKE {
        steps.push(Step::new(name, "fix the engine-specific failure above", move || {
            Ok(cmd!(repo.sh, "cargo test -p xtask --test {file} {name} -- --exact").run()?)
        }));
    }
    steps
}

/// The steps that need the engine. The integration tests drive it: it,
/// `.env` and the base images must be there first. They start everything
/// else they need themselves (isolated stacks, a throwaway registry).
fn engine_steps<'a>(repo: &'a Repo, loaded: &'a Result<Stack>) -> Vec<Step<'a>> {
    let stack = || loaded.as_ref().map_err(|e| anyhow!("{e:#}"));
    vec![
        Step::new(
            "engine and base images",
            "run `cargo xtask setup --yes` (base images are then built by this step)",
            move || {
                Prepared::new(repo, stack()?.clone(), repo.exports(stack()?)?, repo.engine()?)?;
                Ok(())
            },
        ),
        Step::new(
            "isolated stack: pytest against PostgreSQL, OpenAPI fuzzing (schemathesis)",
            "fix the Python tests above, or the API or what its OpenAPI document declares \
             (services/api-server/api_server/app.py)",
            move || against_isolated_stack(&repo.sh, stack()?),
        ),
        Step::new("cargo test", "fix the Rust tests above", || Ok(cmd!(repo.sh, "cargo test --workspace").run()?)),
    ]
}

fn hadolint(sh: &Shell, stack: &Stack) -> Result<()> {
    let root = &stack.root;
    let hadolint = tools::hadolint(sh)?;
    let mut files: Vec<String> = stack.services.iter().map(|s| s.dockerfile_path()).collect();
    // The other installer's variant (uncommitted; bench-build uses it) too.
    let variants = root.join("target/hadolint");
    for s in &stack.services {
        let other = match s.manifest.installer {
            Installer::Uv => Installer::Pip,
            Installer::Pip => Installer::Uv,
        };
        let path = variants.join(format!("{}.{other}.Dockerfile", s.name));
        write_atomic(&path, &gen::dockerfile(stack, s, other))?;
        files.push(path.display().to_string());
        // And the shape with runtime OS packages, which no service here uses.
        let mut with_packages = s.clone();
        with_packages.manifest.runtime_packages = vec!["libpq5".to_owned()];
        let path = variants.join(format!("{}.runtime-packages.Dockerfile", s.name));
        write_atomic(&path, &gen::dockerfile(stack, &with_packages, s.manifest.installer))?;
        files.push(path.display().to_string());
        // And the two-stage shape of build packages, with either installer.
        with_packages.manifest.build_packages = vec!["gcc".to_owned(), "libpq-dev".to_owned()];
        for installer in [Installer::Uv, Installer::Pip] {
            let path = variants.join(format!("{}.build-packages.{installer}.Dockerfile", s.name));
            write_atomic(&path, &gen::dockerfile(stack, &with_packages, installer))?;
            files.push(path.display().to_string());
        }
    }
    cmd!(sh, "{hadolint} --failure-threshold warning {files...}").run()?;
    Ok(())
}

/// The generated GitHub Actions workflow: actionlint (syntax, expressions,
/// shell), then zizmor's security audits, offline (the audits that ask
/// GitHub's API about pinned commits cannot run here). Both must report 0.
fn workflow(sh: &Shell, root: &Path) -> Result<()> {
    let file = root.join(gen::WORKFLOW_PATH);
    let actionlint = tools::actionlint(sh)?;
    cmd!(sh, "{actionlint} -no-color {file}").run()?;
    eprintln!("actionlint: 0 findings in {}", gen::WORKFLOW_PATH);
    let zizmor = tools::zizmor(sh)?;
    cmd!(sh, "{zizmor} --offline --no-progress --persona pedantic {file}").run()?;
    Ok(())
}

/// Every service's SBOM as `cargo xtask gen` renders it (pure: from the
/// manifests and the exported requirements, nothing built), plus the ones `build-images` wrote
/// next to its output, validated against the CycloneDX 1.6 JSON schema.
fn sboms(sh: &Shell, stack: &Stack) -> Result<()> {
    let root = &stack.root;
    let out = root.join("target/sbom-check");
    let mut files = Vec::new();
    for service in &stack.services {
        let lock = service.requirements_path();
        let text = std::fs::read_to_string(root.join(&lock)).with_context(|| format!("cannot read {lock}"))?;
        let requirements = gen::parse_requirements(&text).map_err(|e| anyhow!("{lock}: {e}"))?;
        anyhow::ensure!(!requirements.is_empty(), "{lock}: no pinned requirement");
        let path = out.join(format!("{}.cdx.json", service.name));
        write_atomic(&path, &gen::sbom(stack, service, &requirements, &gen::BaseImage::upstream(stack)))?;
        files.push(path);
    }
    if let Ok(built) = std::fs::read_dir(root.join("target/sbom")) {
        files.extend(
            built.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".cdx.json")),
        );
    }
    let python = tools::cyclonedx_python(sh)?;
    cmd!(sh, "{python} -c {VALIDATE_SBOM} {files...}").run()?;
    Ok(())
}

/// Validates each file named on the command line against CycloneDX 1.6.
const VALIDATE_SBOM: &str = "\
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
validator = JsonStrictValidator(SchemaVersion.V1_6)
failed = 0
for path in sys.argv[1:]:
    with open(path, encoding='utf-8') as f:
        error = validator.validate_str(f.read())
    if error:
        failed += 1
        print(f'{path}: not valid CycloneDX 1.6: {error}')
    else:
        print(f'{path}: valid CycloneDX 1.6')
sys.exit(1 if failed else 0)
";

/// Kubernetes is tested offline (no cluster here): every kustomization
/// renders with kubectl's built-in kustomize, each rendering is schema-valid
/// in strict mode against 1.30 and the newest bundled schema, and every
/// overlay passes checkov's kubernetes checks (skips only by annotation).
fn kubernetes(sh: &Shell, stack: &Stack) -> Result<()> {
    let root = &stack.root;
    use crate::gen::k8s;
    if cmd!(sh, "kubectl version --client").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        bail!("kubectl is missing: install kubectl (it brings kustomize), e.g. from your distribution's Kubernetes packages");
    }
    // A fresh clone has no credentials file yet: the secretGenerator needs one.
    k8s::ensure_secret_env(root)?;
    let validate = tools::kubernetes_validate(sh)?;
    let newest = newest_bundled_schema(&validate)?;
    let checkov = tools::checkov(sh)?;
    let out = root.join("target/k8s");
    std::fs::create_dir_all(&out)?;
    let mut targets = vec![("base".to_owned(), false)];
    targets.extend(k8s::OVERLAYS.iter().map(|o| (format!("overlays/{o}"), true)));
    for (target, overlay) in targets {
        let dir = root.join(k8s::DIR).join(&target);
        let rendered = cmd!(sh, "kubectl kustomize {dir}").quiet().read()?;
        let file = out.join(format!("{}.yaml", target.replace('/', "-")));
        std::fs::write(&file, rendered + "\n")?;
        eprintln!("rendered {target} -> {}", file.display());
        for version in [k8s::OLDEST_KUBERNETES, newest.as_str()] {
            cmd!(sh, "{validate} --strict --quiet --kubernetes-version {version} {file}").run()?;
            eprintln!("{target}: schema-valid (strict) for Kubernetes {version}");
        }
        if overlay {
            // --skip-download: no policy metadata from the network; the checks are bundled.
            cmd!(sh, "{checkov} --quiet --compact --skip-download --framework kubernetes -f {file}").run()?;
        }
    }
    // Registry and tag are set by kustomize `images:` alone: an overlay on
    // top of dev, as README shows it, renders every service image under the
    // names `build-images --push` gives them.
    let release = out.join("release");
    let (registry, tag) = ("registry.example:5000", "0123abc");
    write_atomic(
        &release.join("kustomization.yaml"),
        &k8s::registry_overlay(stack, "../../../deploy/k8s/overlays/dev", registry, tag),
    )?;
    let rendered = cmd!(sh, "kubectl kustomize {release}").quiet().read()?;
    for s in &stack.services {
        let image = format!("image: {registry}/{}/{}:{tag}", stack.manifest.project, s.name);
        anyhow::ensure!(rendered.contains(&image), "the registry overlay does not set {image}");
    }
    eprintln!("a registry overlay sets every service image to {registry}/<prefix>/<service>:{tag}");
    Ok(())
}

/// The newest Kubernetes version whose schemas the installed
/// kubernetes-validate bundles (its `kubernetes-json-schema/v<version>-*` folders).
fn newest_bundled_schema(validate: &Path) -> Result<String> {
    let venv = validate.parent().and_then(Path::parent).context("kubernetes-validate is not in a venv")?;
    let mut newest: Option<(Vec<u32>, String)> = None;
    for entry in walkdir::WalkDir::new(venv.join("lib")).max_depth(4).into_iter().filter_map(|e| e.ok()) {
        if entry.file_name() != "kubernetes-json-schema" {
            continue;
        }
        for schema in std::fs::read_dir(entry.path())?.filter_map(|e| e.ok()) {
            let name = schema.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix('v').and_then(|v| v.split('-').next()) else { continue };
            let key: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
            if newest.as_ref().is_none_or(|(k, _)| &key > k) {
                newest = Some((key, version.to_owned()));
            }
        }
    }
    newest.map(|(_, v)| v).context("kubernetes-validate bundles no schemas (kubernetes-json-schema/v*)")
}

/// On a real isolated stack (removed afterwards): the pytest tests that need
/// PostgreSQL, then schemathesis with every check against the API.
fn against_isolated_stack(sh: &Shell, stack: &Stack) -> Result<()> {
    let root = &stack.root;
    let schemathesis = tools::schemathesis(sh, root)?;
    let scratch = Scratch::create(root, "fuzz", &std::env::current_exe()?)?;
    eprintln!("starting the isolated stack {} in {}", scratch.project, scratch.dir.display());
    scratch.xtask(&["up"])?;
    let env = DotEnv::load_or_create(&scratch.dir)?;
    let python = workspace::sync(sh, root)?;
    let ignore = own_lock_ignores(stack);
    let port = scratch.ports["postgres"].to_string();
    let password = env.get("POSTGRES_PASSWORD").unwrap_or_default();
    let user = env.get("POSTGRES_USER").unwrap_or_else(|| "pysvc".to_owned());
    let db = env.get("POSTGRES_DB").unwrap_or_else(|| "pysvc".to_owned());
    cmd!(sh, "{python} -m pytest -q -p no:cacheprovider {ignore...}")
        .env("PYSVC_TEST_POSTGRES", "1")
        .env("POSTGRES_HOST", "127.0.0.1")
        .env("POSTGRES_PORT", &port)
        .env("POSTGRES_USER", &user)
        .env("POSTGRES_DB", &db)
        .env("POSTGRES_PASSWORD", &password)
        .run()?;
    let schema = format!("http://127.0.0.1:{}/openapi.json", scratch.ports["api-server"]);
    // It keeps a cache folder in its working directory: under target/.
    let _cwd = sh.push_dir(root.join("target"));
    cmd!(sh, "{schemathesis} run {schema} --checks all --workers 1").run()?;
    Ok(())
}

/// The developer's own path: `uv sync --locked` (the root `.venv`), then
/// pytest over every service as `uv run pytest` runs it (the root
/// pyproject's settings), then mypy per service: `--strict`, unless the
/// service's pyproject has a `[tool.mypy]` table of its own (an adopted
/// service). One mypy run per service, so two services' top-level module
/// names never meet.
fn pytest(sh: &Shell, stack: &Stack) -> Result<()> {
    let root = &stack.root;
    let python = workspace::sync(sh, root)?;
    let ignore = own_lock_ignores(stack);
    cmd!(sh, "{python} -m pytest -q -p no:cacheprovider {ignore...}").run()?;
    let cache = root.join("target/mypy-cache");
    let shared: Vec<String> = stack.manifest.shared.iter().map(|s| s.path.clone()).collect();
    let shared_parents: Vec<String> =
        shared.iter().map(|p| Path::new(p).parent().map(|p| p.display().to_string()).unwrap_or_default()).collect();
    cmd!(sh, "{python} -m mypy --strict --explicit-package-bases --cache-dir {cache} {shared...}")
        .env("MYPYPATH", shared_parents.join(":"))
        .run()?;
    for s in &stack.services {
        let packages: Vec<String> = s.manifest.packages.iter().map(|p| format!("{}/{p}", s.dir)).collect();
        let config = match s.project.has_mypy_config {
            true => vec!["--config-file".to_owned(), s.pyproject_path()],
            false => vec!["--strict".to_owned()],
        };
        let path = std::iter::once(s.dir.clone()).chain(shared_parents.iter().cloned()).collect::<Vec<_>>();
        // A service with its own lock: its tests and types in its own `.venv`.
        let python = match s.own_lock() {
            true => own_lock_pytest(sh, root, s)?,
            false => python.clone(),
        };
        cmd!(sh, "{python} -m mypy {config...} --explicit-package-bases --cache-dir {cache} {packages...}")
            .env("MYPYPATH", path.join(":"))
            .run()?;
    }
    Ok(())
}

/// pytest's `--ignore` for the folders of the services with their own lock:
/// the workspace's `.venv` does not have their dependencies.
fn own_lock_ignores(stack: &Stack) -> Vec<String> {
    stack.services.iter().filter(|s| s.own_lock()).map(|s| format!("--ignore={}", s.dir)).collect()
}

/// A service with its own lock: `uv sync --locked` in its folder (its
/// `.venv`), then its tests there, as `uv run pytest` in its folder runs
/// them; its Python.
fn own_lock_pytest(sh: &Shell, root: &Path, service: &Service) -> Result<PathBuf> {
    let python = workspace::sync_own(sh, root, service)?;
    let _dir = sh.push_dir(root.join(&service.dir));
    let status = cmd!(sh, "{python} -m pytest -q -p no:cacheprovider").quiet().ignore_status().output()?;
    // Exit code 5: no tests collected (an adopted folder may have none).
    if !status.status.success() && status.status.code() != Some(5) {
        print!("{}", String::from_utf8_lossy(&status.stdout));
        bail!("{}'s tests failed in its own .venv (`uv run pytest` in {})", service.name, service.dir);
    }
    print!("{}", String::from_utf8_lossy(&status.stdout));
    Ok(python)
}
