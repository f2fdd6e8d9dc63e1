//! `cargo xtask build-images`: builds every service image through the Docker
//! Engine API (BuildKit), in parallel, each from a minimal context the xtask
//! assembles itself (`images`). Images whose inputs are unchanged are skipped.

use anyhow::Result;
use clap::Args;

use crate::images::{self, Select};
use crate::prepared::Repo;

/// Build every service image (BuildKit, through the Engine API) with progress and a size report.
#[derive(Args, Debug, Default, Clone)]
pub struct BuildImages {
    /// Only these services (default: all).
    pub services: Vec<String>,
    /// Rebuild even when the inputs are unchanged.
    #[arg(long)]
    pub force: bool,
    /// Do not use BuildKit's layer cache (cache mounts still apply).
    #[arg(long)]
    pub no_cache: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Push the tags to this registry (host:port) after building.
    #[arg(long, value_name = "REGISTRY")]
    pub push: Option<String>,
    /// Reuse layers from the build cache in this repository
    /// (`<registry>/<path>`, e.g. 127.0.0.1:5000/pysvc): each image's
    /// `<repo>/<service>:cache`. Repeatable. A missing or unreachable cache is
    /// a warning, and the image is built without it.
    #[arg(long, value_name = "REPO")]
    pub cache_from: Vec<String>,
    /// After building, push each image (it carries its layer cache, "inline
    /// cache") as `<repo>/<service>:cache`, for `--cache-from` elsewhere.
    #[arg(long, value_name = "REPO")]
    pub cache_to: Option<String>,
}

impl BuildImages {
    pub fn run(self, repo: &Repo) -> Result<()> {
        // What `up` does first: engine (offering `setup`), `.env`, and the
        // base images it selects, pulled or, without a registry, built
        // locally. A first `build-images` on an air-gapped machine works.
        let p = repo.prepare()?;
        let select = Select {
            services: self.services,
            force: self.force,
            no_cache: self.no_cache,
            quiet: self.json,
            cache_from: self.cache_from,
            cache_to: self.cache_to.clone(),
        };
        p.block_on(async {
            let results = images::build_all(&p, &select).await?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                images::print_table(&results);
            }
            if let Some(repo) = &self.cache_to {
                images::push_cache(p.docker(), repo, &results).await?;
            }
            if let Some(registry) = &self.push {
                images::push_all(p.docker(), registry, &results).await?;
            }
            Ok(())
        })
    }
}
