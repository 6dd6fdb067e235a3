//! `gnn-coder store migrate` (a PostgreSQL store's schema) and `gnn-coder health` (a server's
//! gRPC health, for container health checks).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gnn_coder_engine::{PgStore, StoreLocation};

use crate::advice::advise;
use crate::remote::{STORE_ENV, ServerFlags};

#[derive(Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Create a PostgreSQL store's schema, or bring an older one to this version (`index`
    /// does this itself for a new database; run it before serving an upgraded store).
    Migrate {
        /// postgres://USER@HOST:PORT/DB (default: $GNN_CODER_STORE; password from the URL or
        /// $PGPASSWORD).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
}

pub fn run(args: StoreArgs) -> Result<()> {
    match args.command {
        StoreCommand::Migrate { store } => {
            let url = match store.or_else(|| std::env::var(STORE_ENV).ok()) {
                Some(u) if !u.trim().is_empty() => u,
                _ => bail!("give --store URL (or set ${STORE_ENV})"),
            };
            let location = StoreLocation::postgres(&url).map_err(advise)?;
            let StoreLocation::Postgres(url) = &location else {
                unreachable!("postgres() gives a PostgreSQL location");
            };
            let applied = PgStore::migrate(url)
                .map_err(|e| advise(e.into()))
                .with_context(|| format!("cannot migrate {location}"))?;
            if applied.is_empty() {
                println!(
                    "{location}: schema version {} (up to date)",
                    gnn_coder_engine::PG_SCHEMA_VERSION
                );
            } else {
                let list: Vec<String> = applied.iter().map(i32::to_string).collect();
                println!(
                    "{location}: applied migration {} (schema version {})",
                    list.join(", "),
                    gnn_coder_engine::PG_SCHEMA_VERSION
                );
            }
            Ok(())
        }
    }
}

#[derive(Args)]
pub struct HealthArgs {
    #[command(flatten)]
    server: ServerFlags,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

/// Exits 0 when the server's gRPC health service says SERVING, else fails with its status.
pub fn health(args: HealthArgs) -> Result<()> {
    if args.server.store.is_some() {
        bail!("health checks a server: give --server URL");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let url = args.server.url().to_string();
    let status = runtime.block_on(async {
        let channel = gnn_coder_service::client::channel(&url, &args.server.client_options()?)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let ask = client.check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        });
        let reply = tokio::time::timeout(Duration::from_secs(args.timeout.max(1)), ask)
            .await
            .map_err(|_| anyhow::anyhow!("{url} did not answer within {}s", args.timeout))?
            .with_context(|| format!("health check of {url} failed"))?;
        anyhow::Ok(reply.into_inner().status)
    })?;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    if status != serving {
        let name = tonic_health::pb::health_check_response::ServingStatus::try_from(status)
            .map(|s| s.as_str_name().to_string())
            .unwrap_or_else(|_| status.to_string());
        bail!("{url} is {name}");
    }
    println!("{url}: SERVING");
    Ok(())
}
