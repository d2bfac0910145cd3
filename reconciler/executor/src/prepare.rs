//! `gitvps node prepare` over SSH: who the login user is, the probe, the decision of
//! `planner::prepare`, and with `fix` the fix and a second probe that proves it took.

use planner::prepare::{Access, Decision, PrepareError, Target};

use crate::ssh::{Credentials, Session, SshError, SshTarget, Timeouts};

/// Why preparing a node stopped.
#[derive(Debug, thiserror::Error)]
pub enum PrepareRunError {
    /// The connection or a command failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The node was refused; nothing was changed.
    #[error("{node}: {source}; nothing changed")]
    Refused {
        /// The node.
        node: String,
        /// Why.
        source: PrepareError,
    },
    /// A command on the node failed.
    #[error("{node}: {what} failed (exit {status}): {tail}")]
    Failed {
        /// The node.
        node: String,
        /// Which command.
        what: &'static str,
        /// Its exit status, or its signal.
        status: String,
        /// The end of its output.
        tail: String,
    },
    /// The fix ran, and the node still is not as needed.
    #[error("{node}: after the fix the node still is not as needed:\n{report}")]
    NotFixed {
        /// The node.
        node: String,
        /// The second probe's report.
        report: String,
    },
}

/// What a run found and did.
#[derive(Debug)]
pub struct Outcome {
    /// How the login user became root.
    pub access: Access,
    /// The decision from the first probe.
    pub decision: Decision,
    /// The fix ran (and the second probe found everything fixable as needed).
    pub fixed: bool,
    /// The `changed ...` lines the fix printed.
    pub changed: usize,
}

/// Runs one command, failing on a non-zero exit.
async fn run(s: &Session, what: &'static str, cmd: &str) -> Result<String, PrepareRunError> {
    let out = s.exec(cmd, None).await?;
    if !out.success() {
        return Err(PrepareRunError::Failed {
            node: s.node().to_owned(),
            what,
            status: out
                .status
                .map(|c| c.to_string())
                .or(out.signal.clone())
                .unwrap_or_else(|| "none".into()),
            tail: out.tail(15),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks the node (as `ssh.user`) against `t` and, with `fix`, changes what can be changed.
pub async fn prepare(
    ssh: &SshTarget,
    creds: &Credentials,
    timeouts: Timeouts,
    t: &Target,
    fix: bool,
) -> Result<Outcome, PrepareRunError> {
    let node = ssh.node.clone();
    let refused = |source| PrepareRunError::Refused {
        node: node.clone(),
        source,
    };
    let s = Session::connect(ssh, creds, timeouts).await?;
    let who = run(&s, "the access check", &planner::prepare::access_command()).await?;
    let access = planner::prepare::parse_access(&who, &ssh.user).map_err(refused)?;
    let probe = planner::prepare::probe_command(t, access);
    let decision =
        planner::prepare::decide(t, &run(&s, "the probe", &probe).await?).map_err(refused)?;
    let mut outcome = Outcome {
        access,
        decision,
        fixed: false,
        changed: 0,
    };
    let command = outcome.decision.fix_command(access);
    if let (true, Some(cmd)) = (fix, command) {
        tracing::info!(node = %ssh.node, "fixing");
        let out = run(&s, "the fix", &cmd).await?;
        outcome.changed = planner::prepare::changed_lines(&out);
        outcome.fixed = true;
        let again = planner::prepare::decide(t, &run(&s, "the second probe", &probe).await?)
            .map_err(refused)?;
        let left = again
            .checks
            .iter()
            .any(|c| matches!(c.state, planner::prepare::State::Fix(_)));
        if left {
            return Err(PrepareRunError::NotFixed {
                node: ssh.node.clone(),
                report: again.render(false),
            });
        }
    }
    s.close().await;
    Ok(outcome)
}
