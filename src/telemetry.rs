//! Structured logs (tracing). `RUST_LOG` filters; `FORWARDER_LOG=json` prints JSON lines.

use tracing_subscriber::EnvFilter;

const DEFAULT: &str = "info,aws_config=warn,aws_smithy_runtime=warn,sqlx=warn,tower_http=warn";

/// The AWS SDK's crates, capped at `info` whatever `RUST_LOG` asks: at debug and trace they
/// print their configuration, each resolved identity and each request being signed, access
/// key id included.
/// And sqlx's connection-URL parser, which warns about a parameter it does not know with its
/// value (`?sslpassword=…` in `store.url`).
const NEVER_VERBOSE: [&str; 9] = [
    "sqlx_postgres::options=error",
    "aws_config=info",
    "aws_credential_types=info",
    "aws_runtime=info",
    "aws_sdk_s3=info",
    "aws_sigv4=info",
    "aws_smithy_http_client=info",
    "aws_smithy_runtime=info",
    "aws_smithy_runtime_api=info",
];

/// The log filter for `spec` (a `RUST_LOG` value), with the credential-printing targets capped.
pub fn filter(spec: &str) -> EnvFilter {
    NEVER_VERBOSE
        .iter()
        .fold(EnvFilter::new(spec), |f, d| f.add_directive(d.parse().expect("a valid directive")))
}

/// Logs go to stderr (stdout is the commands' own output), coloured only on a terminal.
pub fn init() {
    use std::io::IsTerminal;
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&spec))
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if std::env::var("FORWARDER_LOG").is_ok_and(|v| v == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn sqlx_url_warnings_stay_out_whatever_rust_log_says() {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(super::filter("trace"))
            .with_writer(move || SinkWriter(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "sqlx_postgres::options::parse", value = "pw-secret", "ignoring unrecognized connect parameter");
            tracing::warn!(target: "forwarder::store", "kept");
        });
        let out = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(out.contains("kept") && !out.contains("pw-secret"), "{out}");
    }

    struct SinkWriter(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for SinkWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
