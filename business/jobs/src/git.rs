//! A job's working clone, driven through the `git` command (the operator's credentials and
//! CI's checkout auth apply): commit the job's own paths, push, and start over on a lost race.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// How often a job decides (or records) again after losing a push race before it gives up.
pub const PUSH_TRIES: usize = 5;

/// Author and committer of the jobs' commits.
pub const BOT: (&str, &str) = ("gitvps-bot", "gitvps-bot@gitvps.invalid");

/// Why git could not do what a job asked.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// `git` could not be started.
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    /// The folder is not the top of a git work tree.
    #[error("{} is not a git work tree: {detail}", path.display())]
    NotARepo {
        /// The folder.
        path: PathBuf,
        /// What git said.
        detail: String,
    },
    /// A path the job would commit has changes that are not the job's.
    #[error("{} has uncommitted changes under {path}: commit or stash them first", repo.display())]
    Dirty {
        /// The work tree.
        repo: PathBuf,
        /// The path.
        path: String,
    },
    /// A git command failed.
    #[error("git {args} failed in {}: {detail}", repo.display())]
    Failed {
        /// The work tree.
        repo: PathBuf,
        /// The arguments (never credentials: remotes are named, not spelled out).
        args: String,
        /// The last lines git printed.
        detail: String,
    },
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The remote branch now holds the local head.
    Landed,
    /// Someone pushed first: fetch, start over on their head, and push again.
    LostRace,
}

/// A git work tree a job commits to.
#[derive(Debug, Clone)]
pub struct Worktree {
    root: PathBuf,
}

impl Worktree {
    /// The work tree whose top folder is `root`.
    pub fn open(root: &Path) -> Result<Worktree, GitError> {
        let w = Worktree {
            root: root.to_path_buf(),
        };
        let out = w.run(&["rev-parse", "--show-toplevel"])?;
        let top = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let same = match (top.canonicalize(), root.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !out.status.success() || !same {
            return Err(GitError::NotARepo {
                path: root.to_path_buf(),
                detail: if out.status.success() {
                    format!("its top folder is {}", top.display())
                } else {
                    tail(&out)
                },
            });
        }
        Ok(w)
    }

    /// The top folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The commit id of HEAD.
    pub fn head(&self) -> Result<String, GitError> {
        let out = self.ok(&["rev-parse", "HEAD"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Refuses when any of `paths` has uncommitted changes (the job would commit them).
    pub fn ensure_clean(&self, paths: &[&str]) -> Result<(), GitError> {
        let mut args = vec!["status", "--porcelain", "--untracked-files=all", "--"];
        args.extend_from_slice(paths);
        self.refuse_changes(&args)
    }

    /// `Dirty`, naming the first path, when `git <status_args>` lists any change.
    fn refuse_changes(&self, status_args: &[&str]) -> Result<(), GitError> {
        let out = self.ok(status_args)?;
        match String::from_utf8_lossy(&out.stdout).lines().next() {
            None => Ok(()),
            Some(line) => Err(GitError::Dirty {
                repo: self.root.clone(),
                path: line.get(3..).unwrap_or(line).to_owned(),
            }),
        }
    }

    /// Commits every change under `paths` (and only there) as the bot; `None` when there was
    /// nothing to commit.
    pub fn commit(&self, message: &str, paths: &[&str]) -> Result<Option<String>, GitError> {
        let mut add = vec!["add", "--all", "--"];
        add.extend_from_slice(paths);
        self.ok(&add)?;
        let mut staged = vec!["diff", "--cached", "--quiet", "--"];
        staged.extend_from_slice(paths);
        if self.run(&staged)?.status.success() {
            return Ok(None);
        }
        let (name, email) = BOT;
        let user = format!("user.name={name}");
        let mail = format!("user.email={email}");
        let mut commit = vec![
            "-c",
            &user,
            "-c",
            &mail,
            "commit",
            "--quiet",
            "--no-verify",
            // The message on stdin: a large run's message may be longer than an argument.
            "-F",
            "-",
            "--",
        ];
        commit.extend_from_slice(paths);
        let out = self.run_with_input(&commit, message.as_bytes())?;
        if !out.status.success() {
            return Err(self.failed(&commit, &out));
        }
        self.head().map(Some)
    }

    /// The remote and branch HEAD tracks, if it tracks one.
    pub fn upstream(&self) -> Result<Option<(String, String)>, GitError> {
        let out = self.run(&[
            "rev-parse",
            "--abbrev-ref",
            "--symbolic-full-name",
            "@{upstream}",
        ])?;
        if !out.status.success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(text
            .split_once('/')
            .map(|(r, b)| (r.to_owned(), b.to_owned())))
    }

    /// Pushes HEAD to `branch` of `remote`.
    pub fn push(&self, remote: &str, branch: &str) -> Result<Pushed, GitError> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        let out = self.run(&["push", "--porcelain", remote, &refspec])?;
        if out.status.success() {
            return Ok(Pushed::Landed);
        }
        // `--porcelain` marks a ref the remote refused with `!`; a non-fast-forward is a race.
        let text = String::from_utf8_lossy(&out.stdout);
        let rejected = text.lines().any(|l| {
            l.starts_with('!') && (l.contains("non-fast-forward") || l.contains("fetch first"))
        });
        if rejected {
            Ok(Pushed::LostRace)
        } else {
            Err(self.failed(&["push", remote, &refspec], &out))
        }
    }

    /// Fetches `branch` of `remote` and moves HEAD and the work tree to it, dropping local
    /// commits (the job decides again on the new head). Refused while a tracked file has
    /// uncommitted changes, which the reset would throw away.
    pub fn reset_to_remote(&self, remote: &str, branch: &str) -> Result<(), GitError> {
        self.refuse_changes(&["status", "--porcelain", "--untracked-files=no"])?;
        self.ok(&["fetch", "--quiet", remote, branch])?;
        self.ok(&["reset", "--quiet", "--hard", "FETCH_HEAD"])?;
        Ok(())
    }

    fn run(&self, args: &[&str]) -> Result<Output, GitError> {
        Command::new("git")
            .arg("-C")
            .arg(&self.root)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(GitError::Spawn)
    }

    /// `run`, with `input` on git's stdin.
    fn run_with_input(&self, args: &[&str], input: &[u8]) -> Result<Output, GitError> {
        use std::io::Write;
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.root)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(GitError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).map_err(GitError::Spawn)?;
        }
        child.wait_with_output().map_err(GitError::Spawn)
    }

    fn ok(&self, args: &[&str]) -> Result<Output, GitError> {
        let out = self.run(args)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(self.failed(args, &out))
        }
    }

    fn failed(&self, args: &[&str], out: &Output) -> GitError {
        GitError::Failed {
            repo: self.root.clone(),
            args: args.join(" "),
            detail: tail(out),
        }
    }
}

/// The last lines of what git printed, on one line.
fn tail(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let text = if err.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout)
    } else {
        err
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let st = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
            .args(args)
            .output()
            .unwrap();
        assert!(st.status.success(), "{args:?}: {}", tail(&st));
    }

    /// A bare remote and two clones of it.
    fn setup() -> (tempfile::TempDir, Worktree, Worktree) {
        let t = tempfile::tempdir().unwrap();
        let seed = t.path().join("seed");
        std::fs::create_dir(&seed).unwrap();
        git(&seed, &["init", "-q", "-b", "main"]);
        std::fs::write(seed.join("a.txt"), "a\n").unwrap();
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", "seed"]);
        git(t.path(), &["clone", "-q", "--bare", "seed", "r.git"]);
        git(t.path(), &["clone", "-q", "r.git", "one"]);
        git(t.path(), &["clone", "-q", "r.git", "two"]);
        let one = Worktree::open(&t.path().join("one")).unwrap();
        let two = Worktree::open(&t.path().join("two")).unwrap();
        (t, one, two)
    }

    #[test]
    fn commits_only_its_paths_pushes_and_sees_a_lost_race() {
        let (_t, one, two) = setup();
        assert_eq!(
            one.upstream().unwrap(),
            Some(("origin".to_owned(), "main".to_owned()))
        );
        std::fs::create_dir_all(one.root().join("billing")).unwrap();
        std::fs::write(one.root().join("billing/x.toml"), "x = 1\n").unwrap();
        std::fs::write(one.root().join("other.txt"), "not mine\n").unwrap();
        let c = one.commit("billing: x", &["billing"]).unwrap();
        assert!(c.is_some());
        assert_eq!(one.commit("again", &["billing"]).unwrap(), None);
        let shown = one
            .run(&["show", "--stat", "--format=%an %s", "HEAD"])
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.contains("gitvps-bot billing: x"), "{shown}");
        assert!(!shown.contains("other.txt"), "{shown}");
        assert!(one.ensure_clean(&["billing"]).is_ok());
        assert!(matches!(
            one.ensure_clean(&["other.txt"]),
            Err(GitError::Dirty { .. })
        ));

        // The second clone pushes first; the first one loses the race, resets and lands.
        std::fs::write(two.root().join("b.txt"), "b\n").unwrap();
        two.commit("b", &["b.txt"]).unwrap();
        assert_eq!(two.push("origin", "main").unwrap(), Pushed::Landed);
        assert_eq!(one.push("origin", "main").unwrap(), Pushed::LostRace);
        std::fs::write(one.root().join("a.txt"), "edited\n").unwrap();
        assert!(
            matches!(one.reset_to_remote("origin", "main"), Err(GitError::Dirty { path, .. }) if path == "a.txt"),
            "a reset would throw the edit away"
        );
        std::fs::write(one.root().join("a.txt"), "a\n").unwrap();
        one.reset_to_remote("origin", "main").unwrap();
        assert!(one.root().join("b.txt").exists());
        assert!(!one.root().join("billing/x.toml").exists());
        assert_eq!(one.head().unwrap(), two.head().unwrap());
    }

    #[test]
    fn a_message_longer_than_an_argument_is_committed_whole() {
        let (_t, one, _) = setup();
        std::fs::write(one.root().join("big.txt"), "x\n").unwrap();
        let line = "! mail reminder.v000001.2026-07-15.30d c-000001 <c1@example.net>\n";
        let message = format!("billing run: many\n\n{}", line.repeat(40_000));
        assert!(message.len() > 2 << 20);
        one.commit(&message, &["big.txt"]).unwrap().unwrap();
        let shown = one.run(&["log", "-1", "--format=%B"]).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&shown.stdout).trim(),
            message.trim()
        );
    }

    #[test]
    fn a_folder_that_is_not_a_work_tree_top_is_refused() {
        let (t, one, _) = setup();
        std::fs::create_dir(one.root().join("sub")).unwrap();
        assert!(matches!(
            Worktree::open(&one.root().join("sub")),
            Err(GitError::NotARepo { .. })
        ));
        assert!(matches!(
            Worktree::open(t.path()),
            Err(GitError::NotARepo { .. })
        ));
    }

    #[test]
    fn a_push_to_a_missing_remote_is_an_error_naming_it() {
        let (_t, one, _) = setup();
        let e = one.push("nowhere", "main").unwrap_err().to_string();
        assert!(e.contains("push nowhere"), "{e}");
    }
}
