//! Configuration: one TOML file plus `FORWARDER_*` environment overrides (figment), checked by
//! [`Config::validate`] before anything is built.
//!
//! Environment variables use `__` between levels: `FORWARDER_SMTP__URL`,
//! `FORWARDER_UPLOAD__PART_SIZE_MIB`, `FORWARDER_LISTEN`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
// Sections kept with the code that reads them: `[limits]` bounds a request's parameters (job),
// `[s3]` and `[upload]` are the uploads' own.
pub use crate::job::Limits;
pub use crate::upload::{S3Defaults, UploadConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Timeouts and the connection cap of the HTTP server.
    pub server: ServerConfig,
    /// Where the SQLite job store, the server key, the outbox and the demo data live.
    pub data_dir: PathBuf,
    /// Catalog file (TOML) naming the tables queries may read. Default: the demo catalog in
    /// the data directory, created on first start.
    pub catalog: Option<PathBuf>,
    /// Rows of the generated demo table when the default catalog is created.
    pub demo_rows: u64,
    pub store: StoreConfig,
    pub worker: WorkerConfig,
    pub limits: Limits,
    pub upload: UploadConfig,
    pub smtp: SmtpConfig,
    pub auth: AuthConfig,
    /// The default destination, for requests without `aws.*` parameters.
    pub s3: S3Defaults,
    /// The destinations beyond S3: `[destinations.file] root`.
    pub destinations: crate::upload::DestinationsConfig,
    /// How catalog tables in GCS and Azure are read (`[tables.gcs]`, `[tables.azure]`).
    pub tables: crate::query::TableStoresConfig,
    /// The async exports' files (`POST /v1/queries/{id}/export/async`).
    pub export: ExportConfig,
    /// `POST /v1/data/export-temp`, the export that runs inside its request.
    pub export_temp: ExportTempConfig,
    /// Serve HTTPS with this certificate (Devo's SDK calls the job endpoints over https).
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            server: ServerConfig::default(),
            data_dir: PathBuf::from("forwarder-data"),
            catalog: None,
            demo_rows: 100_000,
            store: StoreConfig::default(),
            worker: WorkerConfig::default(),
            limits: Limits::default(),
            upload: UploadConfig::default(),
            smtp: SmtpConfig::default(),
            auth: AuthConfig::default(),
            s3: S3Defaults::default(),
            destinations: Default::default(),
            tables: Default::default(),
            export: ExportConfig::default(),
            export_temp: ExportTempConfig::default(),
            tls: None,
        }
    }
}

/// What a client may hold of the HTTP server: slow or idle connections are closed, so that
/// they cannot take every connection (or file descriptor) the process has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Time to send a request's line and headers (for HTTP/1, counted from the connection's
    /// first byte or the previous answer; a TLS handshake gets the same time).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time to send a whole request body.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A connection with nothing read or written for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections open at once; past it, new ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Streamed queries (`/query`, `/v1/stream`) and export-temp runs one domain may have at
    /// once on this server (0: no cap); past it, HTTP 429.
    pub max_streams_per_domain: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_streams_per_domain: 4,
        }
    }
}

/// `[export]`: the files async exports write for their callers to download.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Where the files are written, one directory per export. Default: `exports` in the data
    /// directory. The API servers serve downloads from it: with workers on other machines, a
    /// volume they share.
    pub temp_dir: Option<PathBuf>,
    /// Rows one export may have; a result with more fails the export.
    pub max_rows: u64,
    /// The progress (`rowsProcessed`) is saved every this many rows.
    pub chunk_size: u64,
    /// A file is removed this long after its export completed, fetched or not.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// The most the files may take on disk, in MB (10^6 bytes); past it new exports are
    /// refused with HTTP 507 (0: no quota).
    pub disk_quota_mb: u64,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            temp_dir: None,
            max_rows: 1_000_000,
            chunk_size: 10_000,
            ttl: Duration::from_secs(24 * 3600),
            disk_quota_mb: 10_000,
        }
    }
}

impl ExportConfig {
    /// The directory the files are in (`temp_dir`, or `exports` in `data_dir`).
    pub fn dir(&self, data_dir: &std::path::Path) -> PathBuf {
        self.temp_dir.clone().unwrap_or_else(|| data_dir.join("exports"))
    }
}

/// `[export_temp]`: the export that runs inside its HTTP request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportTempConfig {
    /// Longest an export may run; past it the export is stopped, what it wrote removed, and
    /// the request answered with an error naming this setting.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ExportTempConfig {
    fn default() -> Self {
        Self { request_timeout: Duration::from_secs(600) }
    }
}

/// Where jobs, their checkpoints and the API credentials are kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database`: one database shared by the workers of
    /// every machine. Unset: an SQLite file in the data directory (one machine).
    pub url: Option<Secret>,
    /// The key that seals the secrets of jobs (AWS keys, zip passwords) in the store, created
    /// on first start. Every process sharing a store needs the same key file. Default:
    /// `server.key` in the data directory.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Run a worker inside `forwarder serve` (set false for API-only nodes).
    pub enabled: bool,
    /// Jobs one worker process runs at the same time.
    pub concurrency: usize,
    /// How long a claimed job stays ours without a heartbeat.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often an idle worker looks for new jobs.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// gzip / zip deflate level, 0-9.
    pub compression_level: u32,
    /// zstd level (`format: zstd`), 1-19: 3 is zstd's own default; higher levels compress
    /// better and slower (20-22 need far more memory per thread, so they are not offered).
    pub zstd_level: i32,
    /// A Parquet part's row group closes once its encoded size reaches this many MB (or at
    /// 1,048,576 rows). The open row group's pages are held in memory until it closes, and
    /// are uploaded then: smaller row groups hold less and upload sooner; larger ones suit
    /// readers that scan whole files.
    pub parquet_row_group_mb: u64,
    /// On shutdown, how long running jobs get to upload their open part and record where
    /// they stand. Past it, their in-flight uploads are aborted; either way the next start
    /// continues them from their last checkpoint.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// Memory one query may hold, in MB (sorts spill to disk past it; what cannot spill
    /// fails the job with a clear error instead of taking the worker down).
    pub query_memory_mb: u64,
    /// Memory the rest of the process may hold besides its running queries, in MB: past
    /// `query_memory_mb` × the queries running plus this, the query holding the most is
    /// stopped and its job fails as over `query_memory_mb` (what no query's pool sees, such as
    /// batches between operators and estimates that fall short, is bounded this way).
    pub memory_margin_mb: u64,
    /// Jobs of one domain running at once, over every worker sharing the store (0: no limit).
    /// Unset: `concurrency` − 1 (at least 1), so that one domain never takes every slot.
    pub max_running_per_domain: Option<u32>,
    /// Jobs of one domain waiting to run; a submission past it is refused with HTTP 429
    /// (0: no limit).
    pub max_queued_per_domain: u64,
    /// Runs in a row that may end the process (or panic) without the job making progress;
    /// the next claim fails the job instead of running it again.
    pub max_crashed_runs: u32,
    /// A bounded job whose query is row-wise over one Parquet table with a time column runs
    /// as this many queries over consecutive slices of its window, so that a resumed run
    /// re-reads at most one slice (0 or 1: one query over the whole window).
    pub time_slices: u32,
    /// No time slice covers less than this many MB of its table's files (0: slices by time
    /// only): every slice re-reads the row groups it shares with the next and opens the table
    /// again, which a small table's export pays for out of all proportion to what slicing
    /// saves it (re-reading a few hundred MB after a crash takes seconds).
    pub min_slice_mb: u64,
}

impl WorkerConfig {
    /// The cap on a domain's running jobs (`None`: no cap), `max_running_per_domain` or its
    /// default.
    pub fn running_cap_per_domain(&self) -> Option<u32> {
        let cap = self
            .max_running_per_domain
            .unwrap_or_else(|| u32::try_from(self.concurrency.saturating_sub(1).max(1)).unwrap_or(u32::MAX));
        (cap > 0).then_some(cap)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 2,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            compression_level: 6,
            zstd_level: 3,
            parquet_row_group_mb: (crate::encode::parquet::ROW_GROUP_BYTES >> 20),
            shutdown_deadline: Duration::from_secs(30),
            query_memory_mb: 512,
            memory_margin_mb: 1024,
            max_running_per_domain: None,
            max_queued_per_domain: 10_000,
            max_crashed_runs: 3,
            time_slices: 64,
            min_slice_mb: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain), `smtps://…` or `smtp://…?tls=required`. Unset: emails are
    /// written as `.eml` files into `outbox`.
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    /// Default: `<data_dir>/outbox`.
    pub outbox: Option<PathBuf>,
    /// Delivery attempts before the failure is recorded in the job's `error` list.
    pub max_attempts: u32,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            url: None,
            username: None,
            password: None,
            from: "Forwarder <forwarder@localhost>".into(),
            outbox: None,
            max_attempts: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens and the domain each belongs to (besides those `forwarder auth` creates).
    pub tokens: Vec<TokenConfig>,
    /// Devo API keys (key, secret, domain) for signed requests.
    pub api_keys: Vec<ApiKeyConfig>,
    /// How far a signed request's `x-logtrust-timestamp` may be from the server's clock.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { tokens: vec![], api_keys: vec![], max_clock_skew: Duration::from_secs(300) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub key: String,
    pub secret: Secret,
    pub domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: Secret,
    pub domain: String,
}

/// `FORWARDER_*` variables that are not configuration: the CLI's own (`FORWARDER_CONFIG`,
/// `FORWARDER_SERVER`, `FORWARDER_TOKEN`, `FORWARDER_LOG`) and the test scripts'
/// (`FORWARDER_TEST_*`, `FORWARDER_KEEP_SERVICES`).
/// Settings holding a secret that may be given in the environment.
const SECRET_SETTINGS: [&str; 3] = ["smtp.password", "store.url", "s3.secret_key"];

fn is_secret_setting(key: &figment::value::UncasedStr) -> bool {
    SECRET_SETTINGS.iter().any(|path| key.as_str().eq_ignore_ascii_case(&path.replace('.', "__")))
}

fn is_config_variable(key: &figment::value::UncasedStr) -> bool {
    let key = key.as_str().to_ascii_lowercase();
    // `FORWARDER_CA` is the CLI's `--ca`: a shell that exports it for `forwarder jobs` must not
    // stop the server it also starts (unknown settings are refused).
    !matches!(key.as_str(), "config" | "server" | "token" | "log" | "keep_services" | "ca")
        && !key.starts_with("test_")
}

/// Above this the connection cap is no cap: tokio's semaphore and the open-file limit are
/// both far below what a larger number claims.
const MAX_CONNECTIONS: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // Not a `source`: the message already holds figment's text, which would print twice.
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Figment's errors without the values they quote: a value in the wrong place (a token given
/// as `auth.tokens`, a password TOML cannot parse) may be a secret, and the message goes to
/// stderr and logs. The key, what was expected and where it came from are kept.
fn load_error(errors: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let described: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let what = match &e.kind {
                Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
                    format!("invalid value, expected {expected}")
                }
                Kind::InvalidLength(_, expected) => format!("wrong number of entries, expected {expected}"),
                Kind::Unsupported(_) | Kind::UnsupportedKey(..) => "unsupported value".to_string(),
                Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".to_string(),
                // TOML syntax errors quote the offending line in a `|` gutter: keep the rest
                // ("TOML parse error at line 3, column 12", what was expected).
                Kind::Message(m) => m
                    .lines()
                    .filter(|l| !l.contains('|'))
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(": "),
                other => other.to_string(),
            };
            let key =
                if e.path.is_empty() { String::new() } else { format!(" for key \"{}\"", e.path.join(".")) };
            let source = e.metadata.as_ref().map_or_else(String::new, |m| match &m.source {
                Some(file) => format!(" (in {} {file})", m.name),
                None => format!(" (in {})", m.name),
            });
            format!("{what}{key}{source}")
        })
        .collect();
    ConfigError::Load(described.join("; "))
}

impl Config {
    /// Defaults, then the file (if any), then `FORWARDER_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!("file {} does not exist", file.display())));
            }
            fig = fig.merge(Toml::file(file));
        }
        fig = fig.merge(
            Env::prefixed("FORWARDER_")
                .filter(|k| is_config_variable(k) && !is_secret_setting(k))
                .split("__"),
        );
        // Secrets as they are written: figment would parse `0012` into the number 12.
        for path in SECRET_SETTINGS {
            let var = format!("FORWARDER_{}", path.replace('.', "__"));
            // As figment matches names: in any case.
            if let Some((_, value)) = std::env::vars().find(|(name, _)| name.eq_ignore_ascii_case(&var)) {
                fig = fig.merge(Serialized::default(path, value));
            }
        }
        // Figment names keys with its profile (`default.smtp.url`); the file says `smtp.url`.
        let config: Config = fig.extract().map_err(load_error)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        let l = &self.limits;
        if !(l.retention_size_mb_min > 0.0 && l.retention_size_mb_min <= l.retention_size_mb_max) {
            return bad("limits: need 0 < retention_size_mb_min <= retention_size_mb_max");
        }
        if !(l.retention_size_mb_min..=l.retention_size_mb_max).contains(&l.retention_size_mb_default) {
            return bad("limits: retention_size_mb_default must lie between the min and the max");
        }
        if l.retention_time_secs_min == 0 || l.retention_time_secs_min > l.retention_time_secs_max {
            return bad("limits: need 0 < retention_time_secs_min <= retention_time_secs_max");
        }
        if self.upload.part_size_mib < 5 || self.upload.part_size_mib > 5 * 1024 {
            return bad("upload.part_size_mib must be between 5 and 5120 (S3's part size limits)");
        }
        if self.upload.concurrency == 0 || self.upload.max_attempts == 0 {
            return bad("upload.concurrency and upload.max_attempts must be at least 1");
        }
        if let Some(url) = &self.store.url
            && !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://"))
        {
            return bad(
                "store.url must be a PostgreSQL URL (postgres://user:password@host:port/database), or unset for the SQLite file in data_dir",
            );
        }
        // Sent in signed headers: what a header cannot carry would panic the S3 signer at every upload.
        let header_safe = |v: &str| v.bytes().all(|b| b.is_ascii_graphic());
        if !self.s3.access_key.as_deref().is_none_or(header_safe)
            || !self.s3.secret_key.as_ref().is_none_or(|k| header_safe(k.expose()))
        {
            return bad(
                "s3.access_key and s3.secret_key may hold only visible ASCII (no spaces, line breaks or other control characters)",
            );
        }
        if self.s3.access_key.is_some() != self.s3.secret_key.is_some() {
            return bad(
                "s3.access_key and s3.secret_key go together (or leave both out for the AWS credential chain)",
            );
        }
        let server = &self.server;
        if [server.header_read_timeout, server.body_read_timeout, server.idle_timeout]
            .contains(&Duration::ZERO)
        {
            return bad(
                "server.header_read_timeout, server.body_read_timeout and server.idle_timeout must be above 0 (like \"10s\")",
            );
        }
        if self.export_temp.request_timeout.is_zero() {
            return bad("export_temp.request_timeout must be above 0 (like \"10m\")");
        }
        if server.max_connections == 0 || server.max_connections > MAX_CONNECTIONS {
            return bad("server.max_connections must be between 1 and 1000000");
        }
        if self.worker.concurrency == 0 {
            return bad("worker.concurrency must be at least 1");
        }
        if self.export.max_rows == 0 || self.export.chunk_size == 0 || self.export.ttl.is_zero() {
            return bad(
                "export.max_rows and export.chunk_size must be at least 1, export.ttl above 0 (like \"24h\")",
            );
        }
        if self.worker.max_crashed_runs == 0 {
            return bad(
                "worker.max_crashed_runs must be at least 1 (runs a job may crash before it is failed)",
            );
        }
        if self.worker.compression_level > 9 {
            return bad("worker.compression_level must be 0-9");
        }
        if !(1..=19).contains(&self.worker.zstd_level) {
            return bad("worker.zstd_level must be 1-19");
        }
        if !(1..=1024).contains(&self.worker.parquet_row_group_mb) {
            return bad("worker.parquet_row_group_mb must be 1-1024");
        }
        // Each attempt may take the SMTP timeout (30 s) and a backoff (up to 30 s with jitter):
        // more attempts could outlast the hold a worker has on a job's email
        // (store::EMAIL_HOLD, 10 minutes), and another worker would send it too.
        if !(1..=8).contains(&self.smtp.max_attempts) {
            return bad(
                "smtp.max_attempts must be 1-8 (each attempt may take a minute, and a job's email is held by its sender for 10 minutes)",
            );
        }
        if self.auth.tokens.iter().any(|t| t.token.expose().len() < 16 || t.domain.is_empty()) {
            return bad("auth.tokens: every token needs at least 16 characters and a domain");
        }
        if self
            .auth
            .api_keys
            .iter()
            .any(|k| k.key.is_empty() || k.secret.expose().len() < 16 || k.domain.is_empty())
        {
            return bad(
                "auth.api_keys: every key needs a key, a secret of at least 16 characters and a domain",
            );
        }
        Ok(())
    }

    pub fn key_file(&self) -> PathBuf {
        self.store.key_file.clone().unwrap_or_else(|| self.data_dir.join("server.key"))
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.catalog.clone().unwrap_or_else(|| self.data_dir.join("demo").join("catalog.toml"))
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.smtp.outbox.clone().unwrap_or_else(|| self.data_dir.join("outbox"))
    }

    pub fn temp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_the_environment_keep_every_character() {
        for password in ["0012", "12345678", "true", "[1, 2]"] {
            // SAFETY: nextest runs each test in a process of its own.
            unsafe {
                std::env::set_var("FORWARDER_SMTP__PASSWORD", password);
                std::env::set_var("FORWARDER_STORE__URL", format!("postgres://f:{password}@db/f"));
            }
            let config = Config::load(None).unwrap();
            assert_eq!(config.smtp.password.as_ref().map(Secret::expose), Some(password));
            assert_eq!(
                config.store.url.as_ref().map(Secret::expose),
                Some(format!("postgres://f:{password}@db/f").as_str())
            );
        }
        unsafe {
            std::env::remove_var("FORWARDER_SMTP__PASSWORD");
            std::env::remove_var("FORWARDER_STORE__URL");
        }
    }

    #[test]
    fn allowed_endpoints_from_the_environment_are_a_comma_separated_list() {
        for (value, expected) in [
            ("127.0.0.1", vec!["127.0.0.1"]),
            ("minio.internal, 10.0.0.0/8", vec!["minio.internal", "10.0.0.0/8"]),
            (r#"["minio.internal","10.0.0.0/8"]"#, vec!["minio.internal", "10.0.0.0/8"]),
        ] {
            // SAFETY: nextest runs each test in a process of its own.
            unsafe { std::env::set_var("FORWARDER_S3__ALLOWED_ENDPOINTS", value) };
            assert_eq!(Config::load(None).unwrap().s3.allowed_endpoints, expected, "{value}");
        }
        unsafe { std::env::remove_var("FORWARDER_S3__ALLOWED_ENDPOINTS") };
    }

    #[test]
    fn configuration_errors_name_the_key_but_not_the_value() {
        let dir = std::env::temp_dir().join(format!("forwarder-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("forwarder.toml");
        for (text, says) in [
            ("auth.tokens = [\"fwd_secret-token-1\"]\n", "for key \"auth.tokens"),
            ("[smtp]\npassword = pa\\ss-secret-token-1\n", "TOML parse error at line 2"),
            ("[store]\nurl = \"postgres://u:pw-secret-token-1@db/f\" \"x\"\n", "TOML parse error"),
            ("listen = 5\n", "for key \"listen\""),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = Config::load(Some(&file)).unwrap_err().to_string();
            assert!(err.contains(says) && !err.contains("secret-token-1"), "{text}: {err}");
        }
    }

    #[test]
    fn cli_and_test_variables_are_not_configuration() {
        use figment::value::UncasedStr;
        for other in
            ["TOKEN", "SERVER", "CONFIG", "LOG", "KEEP_SERVICES", "CA", "TEST_MAILDIR", "test_s3_endpoint"]
        {
            assert!(!is_config_variable(UncasedStr::new(other)), "{other}");
        }
        for setting in ["LISTEN", "DATA_DIR", "UPLOAD__PART_SIZE_MIB", "SMTP__URL"] {
            assert!(is_config_variable(UncasedStr::new(setting)), "{setting}");
        }
    }

    #[test]
    fn server_timeouts_and_connection_cap_must_be_positive() {
        let mut c = Config::default();
        c.server.header_read_timeout = Duration::ZERO;
        assert!(c.validate().unwrap_err().to_string().contains("server.header_read_timeout"));
        let mut c = Config::default();
        c.server.max_connections = 0;
        assert!(c.validate().unwrap_err().to_string().contains("server.max_connections"));
    }

    #[test]
    fn default_s3_keys_must_fit_in_a_header() {
        let mut c = Config::default();
        c.s3.access_key = Some("AKIA\r\nX".into());
        c.s3.secret_key = Some(Secret::new("secret-not-shown"));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("s3.access_key") && !e.contains("AKIA") && !e.contains("secret-not-shown"), "{e}");
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn one_domain_leaves_a_slot_for_others_by_default() {
        let mut w = WorkerConfig::default();
        for (concurrency, cap) in [(1, 1), (2, 1), (8, 7)] {
            w.concurrency = concurrency;
            assert_eq!(w.running_cap_per_domain(), Some(cap), "concurrency {concurrency}");
        }
        w.max_running_per_domain = Some(0);
        assert_eq!(w.running_cap_per_domain(), None, "0: no cap");
        w.max_running_per_domain = Some(5);
        assert_eq!(w.running_cap_per_domain(), Some(5));
    }

    #[test]
    fn rejects_part_size_below_s3_minimum() {
        let mut c = Config::default();
        c.upload.part_size_mib = 4;
        assert!(c.validate().unwrap_err().to_string().contains("part_size_mib"));
    }
}
