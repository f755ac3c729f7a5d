//! `forwarder auth …`: operators create, list and revoke API credentials in the server's job
//! store (on the server's machine, with its configuration). A new token or API secret is
//! printed once, on stdout; only a digest of a token, and a sealed API secret, are stored.

use std::path::Path;

use clap::Subcommand;

use crate::app::new_token;
use crate::config::Config;
use crate::secret::Secret;
use crate::store::{CredentialKind, token_lookup};

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Create a bearer token for a domain; prints it once.
    CreateToken {
        /// The domain whose jobs the token sees and steers.
        #[arg(long)]
        domain: String,
    },
    /// Create a Devo API key and secret for a domain (signed requests); prints them once.
    CreateKey {
        /// The domain whose jobs the key sees and steers.
        #[arg(long)]
        domain: String,
    },
    /// List credentials (ids, kinds, domains; never the tokens or secrets).
    List,
    /// Revoke a credential by its id (as `list` shows it), or by the API key or token itself:
    /// requests using it are refused at once.
    Revoke { id: String },
}

pub async fn run(config: Option<&Path>, command: AuthCommand) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    // Credentials live in the server's job store: say which one, and do not make a new, empty
    // one because the command ran in another directory or without the server's --config.
    match &config.store.url {
        Some(_) => eprintln!("job store: PostgreSQL (store.url)"),
        None => {
            let path = config.data_dir.join("jobs.sqlite");
            anyhow::ensure!(
                path.exists(),
                "no job store at {}: run this with the server's --config (or FORWARDER_DATA_DIR), \
                 once the server has started",
                path.display()
            );
            eprintln!("job store: {}", path.display());
        }
    }
    let (_, store) = crate::store::open(&config).await?;
    match command {
        AuthCommand::CreateToken { domain } => {
            check_domain(&domain)?;
            let token = new_token();
            let id =
                store.add_credential(CredentialKind::Token, &domain, &token_lookup(&token), None).await?;
            eprintln!("created {id} for domain {domain}; the token is shown only now:");
            println!("{token}");
        }
        AuthCommand::CreateKey { domain } => {
            check_domain(&domain)?;
            let secrets = crate::app::server_key(&config, store.as_ref()).await?;
            let key = format!("key_{}", uuid::Uuid::new_v4().simple());
            let secret = Secret::new(new_token().trim_start_matches("fwd_"));
            let sealed = secrets.seal(&secret)?;
            let id = store.add_credential(CredentialKind::ApiKey, &domain, &key, Some(&sealed)).await?;
            eprintln!("created {id} for domain {domain}; the secret is shown only now:");
            println!("apikey: {key}\napisecret: {}", secret.expose());
        }
        AuthCommand::List => {
            let all = store.list_credentials().await?;
            if all.is_empty() {
                println!("no credentials");
                return Ok(());
            }
            let mut rows = vec![["ID", "KIND", "DOMAIN", "CREATED", "STATE"].map(String::from).to_vec()];
            for c in all {
                let created = chrono::DateTime::from_timestamp_millis(c.created_at_ms)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
                rows.push(vec![
                    c.id,
                    if c.kind == CredentialKind::Token { "token" } else { "api key" }.to_string(),
                    c.domain,
                    created.unwrap_or_default(),
                    if c.revoked { "REVOKED" } else { "live" }.to_string(),
                ]);
            }
            println!("{}", crate::jobs_cli::align(&rows));
        }
        AuthCommand::Revoke { id } => {
            // An id as `list` shows it, or what the operator was given: the API key, the token.
            let by_value = match store.find_credential(CredentialKind::ApiKey, &id).await? {
                Some(c) => Some(c),
                None => store.find_credential(CredentialKind::Token, &token_lookup(&id)).await?,
            };
            let id = by_value.map_or(id, |c| c.id);
            if !store.revoke_credential(&id).await? {
                // Not echoed: it may be a token someone pasted.
                anyhow::bail!("no live credential has that id, API key or token (see `forwarder auth list`)");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> anyhow::Result<()> {
    let ok = !domain.is_empty()
        && domain.len() <= 64
        && domain.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    anyhow::ensure!(ok, "--domain must be 1-64 letters, digits, '-', '_' or '.'");
    Ok(())
}
