//! `forwarder --version` names the package version and the commit the binary was built from,
//! so that an operator can tell which code a server runs.

use std::process::Command;

/// What the build should have recorded, found here independently of build.rs:
/// `git rev-parse --short HEAD` of this clone (a build given `BUILT_FROM_COMMIT`, as the
/// container build is, is not tested here).
fn expected_commit() -> Option<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    if !std::path::Path::new(root).join(".git").exists() {
        return None;
    }
    let out = Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(root).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_package_version_and_the_commit() {
    let commit = expected_commit();
    for flag in ["--version", "-V"] {
        let out = Command::new(env!("CARGO_BIN_EXE_forwarder")).arg(flag).output().unwrap();
        assert!(out.status.success(), "forwarder {flag}: {}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (version, built_from) = printed
            .strip_prefix("forwarder ")
            .and_then(|rest| rest.split_once(" ("))
            .and_then(|(version, rest)| Some((version, rest.strip_suffix(')')?)))
            .unwrap_or_else(|| {
                panic!("forwarder {flag} printed {printed:?}, not `forwarder VERSION (COMMIT)`")
            });
        assert_eq!(version, env!("CARGO_PKG_VERSION"), "{flag}");
        match &commit {
            Some(commit) => assert_eq!(built_from, commit, "forwarder {flag} names another commit"),
            // A source tarball without git: said plainly rather than left out.
            None => assert_eq!(built_from, "unknown", "{flag}"),
        }
    }
}
