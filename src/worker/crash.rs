//! Runs that end badly: a panic inside a job's run is turned into the job's error (with the
//! job's secrets taken out of it: a panic in the S3 signer can quote the access key), and a
//! job whose runs keep ending the process is failed rather than run again.

use std::any::Any;

use crate::job::JobSecrets;

/// Text a job's error, log line or email may carry: every secret of the job replaced.
pub fn scrub(text: &str, secrets: &JobSecrets) -> String {
    let mut out = text.to_string();
    for value in secrets.all() {
        if !value.is_empty() {
            out = out.replace(value.expose(), "***");
        }
    }
    out
}

tokio::task_local! {
    /// The secrets of the job whose run is being polled, for the panic hook.
    pub static RUNNING_JOB: JobSecrets;
}

/// Replaces the process's panic hook (once) by one that, for a panic inside a job's run,
/// writes the panic's message with the job's secrets taken out (the standard hook would print
/// it whole to stderr, the log); any other panic goes to the hook that was there before.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info.payload_as_str().unwrap_or("(no message)");
            match RUNNING_JOB.try_with(|secrets| scrub(text, secrets)) {
                Ok(scrubbed) => {
                    let at = info.location().map_or_else(String::new, |l| format!(" at {l}"));
                    tracing::error!("a job's run panicked{at}: {scrubbed}");
                }
                Err(_) => previous(info),
            }
        }));
    });
}

/// What a panic said (its payload is a `&str` or a `String` for `panic!` with text).
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The error a job ends with when its run panicked.
pub fn panicked(payload: &(dyn Any + Send), secrets: &JobSecrets) -> String {
    format!(
        "the job's run failed with an internal error (a panic), and will not be retried: {}",
        scrub(panic_message(payload), secrets)
    )
}

/// The error a job ends with once `runs` of its runs ended the worker without progress.
pub fn gave_up(runs: u32) -> String {
    format!(
        "the job ended its worker {runs} times without progress (crash or panic); it will not be run again \
         (worker.max_crashed_runs): check its query and destination, and submit it again"
    )
}

/// Test hooks, compiled in but inert unless the tests' environment variable is set: they make
/// a job's run end the process (`FORWARDER_TEST_ABORT_ON_QUERY`) or panic
/// (`FORWARDER_TEST_PANIC_ON_QUERY`) when its query contains the variable's value, so that
/// the crash-loop and panic tests need no query that really crashes (those get fixed).
pub fn test_hooks(query: &str, secrets: &JobSecrets) {
    let armed =
        |name: &str| std::env::var(name).is_ok_and(|marker| !marker.is_empty() && query.contains(&marker));
    if armed("FORWARDER_TEST_ABORT_ON_QUERY") {
        eprintln!("FORWARDER_TEST_ABORT_ON_QUERY: aborting the process, as the test asked");
        std::process::abort();
    }
    if armed("FORWARDER_TEST_PANIC_ON_QUERY") {
        // Quotes the access key, as a panic in the S3 signer could.
        let key = secrets.access_key.as_ref().map_or("", |k| k.expose());
        panic!("FORWARDER_TEST_PANIC_ON_QUERY: panicking as the test asked, while signing with {key}");
    }
}

/// Test hook, inert unless `FORWARDER_TEST_ABORT_BEFORE_EMAIL` is set: a job whose query holds
/// its value ends the process after its end is recorded and before its email is sent, so that
/// the test of that window needs no well-timed kill.
pub fn test_hook_before_email(query: &str) {
    if std::env::var("FORWARDER_TEST_ABORT_BEFORE_EMAIL").is_ok_and(|m| !m.is_empty() && query.contains(&m)) {
        eprintln!("FORWARDER_TEST_ABORT_BEFORE_EMAIL: aborting the process, as the test asked");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn a_panic_message_loses_the_jobs_secrets() {
        let secrets = JobSecrets {
            access_key: Some(Secret::new("AKIAEXAMPLE")),
            secret_key: Some(Secret::new("s3cr3t/key")),
            ..JobSecrets::default()
        };
        let payload: Box<dyn Any + Send> =
            Box::new(String::from("bad header AKIAEXAMPLE\r\n with s3cr3t/key"));
        let text = panicked(payload.as_ref(), &secrets);
        assert!(
            text.contains("bad header ***") && !text.contains("AKIA") && !text.contains("s3cr3t"),
            "{text}"
        );
        let payload: Box<dyn Any + Send> = Box::new("static text");
        assert!(panicked(payload.as_ref(), &secrets).ends_with("static text"));
    }
}
