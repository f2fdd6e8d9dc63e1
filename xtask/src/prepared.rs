//! The prepared context every command starts from, built in steps and each
//! step done once per command:
//!
//! 1. [`Repo`]: the repository root and a shell rooted there (always there;
//!    `down`, `logs` and `status` need nothing more).
//! 2. [`Repo::stack`]: the manifests, loaded and validated.
//! 3. [`Repo::exports`]: each service's locked dependencies from `uv.lock`
//!    (a stale lock stops here, with the fix).
//! 4. [`Repo::engine`]: a connected engine with Compose v2 (on a fresh
//!    machine: the checks, and with consent the installs, of `setup`).
//! 5. [`Prepared`]: the stack, its exports, its `.env` and the engine, with
//!    the base images `.env` selects present (pulled, or built without a
//!    registry).
//!
//! Tasks receive a `&Repo` and take the steps they need; what a step loads
//! is passed down, never loaded again.

use std::path::PathBuf;

use anyhow::{bail, Result};
use bollard::Docker;
use xshell::Shell;

use crate::dotenv::DotEnv;
use crate::engine;
use crate::gen;
use crate::manifest::{self, Stack};
use crate::provision::{self, base_images, Provision};
use crate::workspace::{self, Exports};

/// The repository: its root, and one shell rooted there.
pub struct Repo {
    pub root: PathBuf,
    pub sh: Shell,
}

/// A connected engine and the runtime its client runs on.
pub struct Engine {
    pub rt: tokio::runtime::Runtime,
    pub docker: Docker,
    /// What the engine is and can do (`engine::caps`).
    pub caps: engine::Capabilities,
}

/// Everything a command that builds or runs the stack needs, loaded once.
pub struct Prepared {
    /// The repository's shell (rooted at `stack.root`).
    pub sh: Shell,
    pub stack: Stack,
    /// What each service's image installs (exported from `uv.lock`).
    pub exports: Exports,
    pub env: DotEnv,
    pub engine: Engine,
}

impl Repo {
    pub fn new(root: PathBuf) -> Result<Repo> {
        let sh = Shell::new()?;
        sh.change_dir(&root);
        Ok(Repo { root, sh })
    }

    /// The manifests, validated (errors name file, line and column).
    pub fn stack(&self) -> Result<Stack> {
        manifest::load(&self.root)
    }

    /// Each service's exported requirements (`uv lock --check` first: a
    /// stale lock fails with `cargo xtask lock`).
    pub fn exports(&self, stack: &Stack) -> Result<Exports> {
        workspace::exports(&self.sh, stack)
    }

    /// The engine as it is now (honouring `DOCKER_HOST`); nothing is installed.
    pub fn connect(&self) -> Result<Engine> {
        let rt = engine::runtime()?;
        let docker = rt.block_on(engine::connect())?;
        let caps = rt.block_on(engine::caps::of(&docker))?;
        Ok(Engine { rt, docker, caps })
    }

    /// The engine and Compose v2; on a machine without them, `setup`'s checks
    /// and (with consent) installs first.
    pub fn engine(&self) -> Result<Engine> {
        let rt = engine::runtime()?;
        let connected = match provision::compose_version(&self.sh) {
            Some(_) => rt.block_on(engine::connect()).ok(),
            None => None,
        };
        let docker = match connected {
            Some(docker) => docker,
            None => {
                Provision { yes: false, registry: false, engine: None }.run(&self.sh, &self.root)?;
                rt.block_on(engine::connect())?
            }
        };
        let caps = rt.block_on(engine::caps::of(&docker))?;
        Ok(Engine { rt, docker, caps })
    }

    /// All steps: manifests, exports, engine, `.env` and base images.
    pub fn prepare(&self) -> Result<Prepared> {
        let stack = self.stack()?;
        let exports = self.exports(&stack)?;
        let engine = self.engine()?;
        Prepared::new(self, stack, exports, engine)
    }

    /// Fails, with the command that fixes it, when Compose v2 is missing.
    pub fn compose_preflight(&self) -> Result<()> {
        if provision::compose_version(&self.sh).is_none() {
            bail!("Docker Compose v2 is missing (`docker compose version` fails): run `cargo xtask setup --yes`");
        }
        Ok(())
    }

    /// A shell for compose commands that never start anything (`down`,
    /// `logs`): they must work before `.env` exists, so a missing password is
    /// filled in with a placeholder (compose refuses to read the file without one).
    pub fn compose_shell_without_secrets(&self) -> Result<Shell> {
        self.compose_preflight()?;
        let shell = self.sh.clone();
        let in_env_file = std::fs::read_to_string(self.root.join(".env"))
            .map(|t| t.lines().any(|l| l.strip_prefix("POSTGRES_PASSWORD=").is_some_and(|v| !v.trim().is_empty())))
            .unwrap_or(false);
        if !in_env_file && std::env::var_os("POSTGRES_PASSWORD").is_none() {
            shell.set_var("POSTGRES_PASSWORD", "placeholder-not-used-by-down-or-logs");
        }
        Ok(shell)
    }
}

impl Prepared {
    /// The last step: `.env` (created with a random password when missing,
    /// refused next to an existing data volume it cannot open), then the base
    /// images it selects.
    pub fn new(repo: &Repo, stack: Stack, exports: Exports, engine: Engine) -> Result<Prepared> {
        let mut env = DotEnv::load_or_create(&repo.root)?;
        let volume = format!("{}_postgres-data", stack.manifest.project);
        if env.created && engine.rt.block_on(engine.docker.inspect_volume(&volume)).is_ok() {
            bail!(
                "the data volume {volume} already exists (another checkout of this project, or an earlier .env), \
                 but .env was just created with a new random POSTGRES_PASSWORD, which that database will refuse.\n\
                 Either put the password it was initialised with into .env, or delete the old data with \
                 `cargo xtask down --volumes`."
            );
        }
        engine.rt.block_on(base_images::ensure_selected(&repo.sh, &repo.root, &engine.docker, &mut env))?;
        // The compose files this engine takes, for the xtask and for a
        // plain `docker compose` in the checkout alike.
        let files = gen::compose_files(engine.caps.start_interval(), None);
        if env.get("COMPOSE_FILE").as_deref() != Some(files.as_str()) {
            env.set("COMPOSE_FILE", &files);
            env.save()?;
        }
        Ok(Prepared { sh: repo.sh.clone(), stack, exports, env, engine })
    }

    pub fn docker(&self) -> &Docker {
        &self.engine.docker
    }

    /// Runs `f` on the engine's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.engine.rt.block_on(f)
    }

    /// The image names' prefix: `IMAGE_PREFIX` from `.env`, else the project.
    pub fn image_prefix(&self) -> String {
        self.env.get("IMAGE_PREFIX").filter(|v| !v.is_empty()).unwrap_or_else(|| self.stack.manifest.project.clone())
    }
}
