//! Puts the git commit the binary is built from into `BUILT_FROM_COMMIT`, which
//! `forwarder --version` prints: an operator can then tell which code a server runs.
//! Not a `FORWARDER_*` name: cargo and nextest also set it when they run the tests, where it
//! would be read as a configuration setting.
//!
//! The commit comes from the `BUILT_FROM_COMMIT` variable when it is set (the container
//! build passes it, as its build context has no `.git`), else from `git rev-parse --short HEAD`
//! in a clone, else it is "unknown" (a source tarball, or no git installed).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-env-changed=BUILT_FROM_COMMIT");
    let commit = match std::env::var("BUILT_FROM_COMMIT") {
        Ok(given) if !given.trim().is_empty() => given.trim().to_string(),
        _ => commit_of_this_clone().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo::rustc-env=BUILT_FROM_COMMIT={commit}");
}

/// The short commit of HEAD, when this package is the top of a git clone (not a package
/// unpacked inside some other repository), and the files that move when HEAD moves, so that
/// the next build after a commit or a checkout says the new commit.
fn commit_of_this_clone() -> Option<String> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let manifest_dir = Path::new(&manifest_dir);
    // `.git` is a directory in a clone and a file in a worktree.
    if !manifest_dir.join(".git").exists() {
        return None;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).current_dir(manifest_dir).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    // HEAD names the branch (or the commit when detached); the branch's file, or packed-refs,
    // holds its commit. Only files that exist: cargo reruns a script whose listed file is missing
    // at every build.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        let path = manifest_dir.join(path);
        if path.exists() {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
