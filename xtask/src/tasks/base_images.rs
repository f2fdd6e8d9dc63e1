//! `cargo xtask base-images`: the local base images, built without any
//! registry (`provision::base_images`), selected in `.env`.

use anyhow::Result;
use clap::Args;

use crate::dotenv::DotEnv;
use crate::prepared::Repo;
use crate::provision::{base_images, kafka_jars};

/// Build local base images (Debian, Python, uv, PostgreSQL, Kafka brokers) without a registry.
#[derive(Args, Debug)]
pub struct BaseImages {
    /// Rebuild even when an image's recipe is unchanged.
    #[arg(long)]
    pub force: bool,
    /// Only regenerate docker/base/kafka/jars.tsv: Maven resolves Apache Kafka's
    /// classpath (docker/base/kafka/pom.xml) and each jar's sha256 is pinned.
    #[arg(long)]
    pub update_kafka_jars: bool,
}

impl BaseImages {
    pub fn run(self, repo: &Repo) -> Result<()> {
        if self.update_kafka_jars {
            return kafka_jars::update(&repo.sh, &repo.root);
        }
        let engine = repo.connect()?;
        let mut env = DotEnv::load_or_create(&repo.root)?;
        engine.rt.block_on(base_images::ensure_all(&repo.sh, &repo.root, &engine.docker, &mut env, self.force))
    }
}
