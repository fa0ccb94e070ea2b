//! A local git repository for Spring Cloud Config Server's git backend: created over a folder of
//! documents, and each change committed, with the `git` command (as a team's GitOps would).

use std::path::Path;

use anyhow::{Context, bail};

/// Runs `git` in `repo` with a fixed author, so no global git settings are needed.
fn git(repo: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=msakit-bench",
            "-c",
            "user.email=bench@localhost",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(repo)
        .output()
        .context("running git (it must be installed)")?;
    if !output.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Makes the folder `repo` a repository on branch `main` with everything in it committed.
pub(crate) fn init(repo: &Path) -> anyhow::Result<()> {
    git(repo, &["init", "-q", "-b", "main"])?;
    commit_all(repo, "documents")
}

/// Commits every change in `repo`'s working tree.
pub(crate) fn commit_all(repo: &Path, message: &str) -> anyhow::Result<()> {
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "--allow-empty", "-m", message])
}
