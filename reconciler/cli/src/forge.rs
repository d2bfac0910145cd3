//! The pull-request comment APIs of GitHub and GitLab as data: where to list, create and update
//! the plan comment (from the CI's own variables), which comment is ours, and the secret check.

use std::fmt;

use planner::comment::MARKER;

/// Comments asked for per page when looking for ours.
pub const PER_PAGE: usize = 100;

/// Pages read at most (10 000 comments) before giving up and creating a new comment.
pub const MAX_PAGES: usize = 100;

/// Why the comment cannot be posted.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// A CI variable the API needs is not set.
    #[error("{0} is not set: run this in the CI job (docs/workflow.md)")]
    Missing(&'static str),
    /// A CI variable has a value that cannot be right.
    #[error("{name} = {value:?} is not {what}")]
    Bad {
        /// The variable.
        name: &'static str,
        /// Its value (never a token).
        value: String,
        /// What it should be.
        what: &'static str,
    },
    /// The event file does not name a pull request.
    #[error("{path}: not a pull_request event (no pull_request.number); pass --pr N")]
    NoPullRequest {
        /// The event file.
        path: String,
    },
    /// A list of comments is not the JSON the API documents.
    #[error("the comment list is not a JSON array of comments with an id: {0}")]
    List(#[source] serde_json::Error),
    /// The comment would show a secret.
    #[error("the comment contains the value of {0}: not posted (secrets never go in a comment)")]
    Secret(String),
}

/// Which forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// GitHub: issue comments on the pull request, with the workflow's `GITHUB_TOKEN`.
    GitHub,
    /// GitLab: notes on the merge request, with a project access token (`GITVPS_GITLAB_TOKEN`).
    GitLab,
}

impl fmt::Display for Forge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forge::GitHub => "GitHub",
            Forge::GitLab => "GitLab",
        })
    }
}

/// The variable that holds the token for each forge.
pub fn token_var(forge: Forge) -> &'static str {
    match forge {
        Forge::GitHub => "GITHUB_TOKEN",
        Forge::GitLab => "GITVPS_GITLAB_TOKEN",
    }
}

/// Where the comments of one pull or merge request are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// The forge.
    pub forge: Forge,
    /// The API base, without a trailing slash.
    pub api: String,
    /// The comments collection, below `api`.
    pub comments: String,
    /// The prefix of one comment, below `api` (the comment's id follows).
    pub comment: String,
}

impl Thread {
    /// GitHub, from `GITHUB_API_URL`, `GITHUB_REPOSITORY` and the pull request number (given,
    /// or read from the event file at `GITHUB_EVENT_PATH` by the caller and passed as `event`).
    pub fn github(
        env: &dyn Fn(&str) -> Option<String>,
        pr: Option<u64>,
        event: Option<(&str, &[u8])>,
    ) -> Result<Thread, ForgeError> {
        let api = need(env, "GITHUB_API_URL")?;
        let repo = need(env, "GITHUB_REPOSITORY")?;
        let ok = repo.split('/').count() == 2
            && repo
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
            && !repo.contains("..");
        if !ok {
            return Err(ForgeError::Bad {
                name: "GITHUB_REPOSITORY",
                value: repo,
                what: "owner/name",
            });
        }
        let pr = match (pr, event) {
            (Some(n), _) => n,
            (None, Some((path, json))) => pr_of_event(json).ok_or(ForgeError::NoPullRequest {
                path: path.to_owned(),
            })?,
            (None, None) => return Err(ForgeError::Missing("GITHUB_EVENT_PATH")),
        };
        Ok(Thread {
            forge: Forge::GitHub,
            api: base(api, "GITHUB_API_URL")?,
            comments: format!("/repos/{repo}/issues/{pr}/comments"),
            comment: format!("/repos/{repo}/issues/comments/"),
        })
    }

    /// GitLab, from `CI_API_V4_URL`, `CI_PROJECT_ID` and `CI_MERGE_REQUEST_IID` (or the given
    /// merge request).
    pub fn gitlab(
        env: &dyn Fn(&str) -> Option<String>,
        mr: Option<u64>,
    ) -> Result<Thread, ForgeError> {
        let api = need(env, "CI_API_V4_URL")?;
        let project = number(env, "CI_PROJECT_ID")?;
        let mr = match mr {
            Some(n) => n,
            None => number(env, "CI_MERGE_REQUEST_IID")?,
        };
        let notes = format!("/projects/{project}/merge_requests/{mr}/notes");
        Ok(Thread {
            forge: Forge::GitLab,
            api: base(api, "CI_API_V4_URL")?,
            comment: format!("{notes}/"),
            comments: notes,
        })
    }

    /// The URL of one page (from 1) of the comments, oldest first.
    pub fn list_url(&self, page: usize) -> String {
        let order = match self.forge {
            Forge::GitHub => "",
            Forge::GitLab => "&sort=asc&order_by=created_at",
        };
        format!(
            "{}{}?per_page={PER_PAGE}&page={page}{order}",
            self.api, self.comments
        )
    }

    /// The URL that creates a comment (POST).
    pub fn create_url(&self) -> String {
        format!("{}{}", self.api, self.comments)
    }

    /// The URL that updates comment `id` (GitHub: PATCH; GitLab: PUT).
    pub fn update_url(&self, id: u64) -> String {
        format!("{}{}{id}", self.api, self.comment)
    }

    /// The update method.
    pub fn update_method(&self) -> &'static str {
        match self.forge {
            Forge::GitHub => "PATCH",
            Forge::GitLab => "PUT",
        }
    }

    /// The header that carries the token: its name and value.
    pub fn auth(&self, token: &str) -> (&'static str, String) {
        match self.forge {
            Forge::GitHub => ("authorization", format!("Bearer {token}")),
            Forge::GitLab => ("private-token", token.to_owned()),
        }
    }
}

fn need(env: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<String, ForgeError> {
    env(name)
        .filter(|v| !v.is_empty())
        .ok_or(ForgeError::Missing(name))
}

fn number(env: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<u64, ForgeError> {
    let v = need(env, name)?;
    v.parse().map_err(|_| ForgeError::Bad {
        name,
        value: v,
        what: "a number",
    })
}

/// An API base URL: http or https, no query, without its trailing slash.
fn base(url: String, name: &'static str) -> Result<String, ForgeError> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains(['?', '#', ' ', '@']);
    if !ok {
        return Err(ForgeError::Bad {
            name,
            value: url,
            what: "an http(s) URL without credentials",
        });
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `pull_request.number` of a GitHub event file.
pub fn pr_of_event(json: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    v.get("pull_request")?.get("number")?.as_u64()
}

/// Our comment among one page of comments (the first that carries the marker), with its body;
/// and how many comments the page held (fewer than [`PER_PAGE`]: the last page).
pub fn own_comment(page: &[u8]) -> Result<(Option<(u64, String)>, usize), ForgeError> {
    #[derive(serde::Deserialize)]
    struct Comment {
        id: u64,
        #[serde(default)]
        body: Option<String>,
    }
    let list: Vec<Comment> = serde_json::from_slice(page).map_err(ForgeError::List)?;
    let count = list.len();
    let ours = list.into_iter().find_map(|c| {
        c.body
            .filter(|b| b.contains(MARKER))
            .map(|body| (c.id, body))
    });
    Ok((ours, count))
}

/// The JSON body of a create or update request.
pub fn body_json(body: &str) -> String {
    serde_json::json!({ "body": body }).to_string()
}

/// The variables whose values must never appear in a comment: gitvps's secrets, the CI's tokens
/// and the private key the templates hold.
pub fn secret_vars() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = model::settings::SECRET_ENV
        .iter()
        .map(|(name, _)| *name)
        .collect();
    v.extend([
        "GITHUB_TOKEN",
        "GITVPS_GITLAB_TOKEN",
        "GITVPS_PUSH_TOKEN",
        "GITVPS_SSH_PRIVATE_KEY",
        "CI_JOB_TOKEN",
    ]);
    v
}

/// Refuses a comment that contains the value of a secret variable (or a line of a multi-line
/// one, as a private key): values shorter than 8 characters are not checked.
pub fn check_secrets(body: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ForgeError> {
    for name in secret_vars() {
        let Some(value) = env(name) else { continue };
        let value = value.trim();
        let leaks = |s: &str| s.len() >= 8 && body.contains(s);
        if leaks(value)
            || value
                .lines()
                .map(str::trim)
                .any(|l| l.len() >= 16 && leaks(l))
        {
            return Err(ForgeError::Secret(name.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn github_urls_come_from_its_variables_and_the_event() {
        let e = env(&[
            ("GITHUB_API_URL", "http://127.0.0.1:9/api/"),
            ("GITHUB_REPOSITORY", "acme/fleet"),
        ]);
        let event = br#"{"action":"synchronize","pull_request":{"number":42}}"#;
        let t = Thread::github(&e, None, Some(("/ev.json", event))).unwrap();
        assert_eq!(
            t.list_url(2),
            "http://127.0.0.1:9/api/repos/acme/fleet/issues/42/comments?per_page=100&page=2"
        );
        assert_eq!(
            t.create_url(),
            "http://127.0.0.1:9/api/repos/acme/fleet/issues/42/comments"
        );
        assert_eq!(
            t.update_url(7),
            "http://127.0.0.1:9/api/repos/acme/fleet/issues/comments/7"
        );
        assert_eq!(t.update_method(), "PATCH");
        assert_eq!(t.auth("tok").0, "authorization");
        let push = br#"{"ref":"refs/heads/main"}"#;
        let err = Thread::github(&e, None, Some(("/ev.json", push))).unwrap_err();
        assert!(
            err.to_string().contains("not a pull_request event"),
            "{err}"
        );
        assert_eq!(
            Thread::github(&e, Some(5), None).unwrap().create_url(),
            "http://127.0.0.1:9/api/repos/acme/fleet/issues/5/comments"
        );
        let bad = env(&[
            ("GITHUB_API_URL", "http://h"),
            ("GITHUB_REPOSITORY", "../x"),
        ]);
        assert!(Thread::github(&bad, Some(1), None).is_err());
    }

    #[test]
    fn gitlab_urls_come_from_its_variables() {
        let e = env(&[
            ("CI_API_V4_URL", "https://gitlab.example/api/v4"),
            ("CI_PROJECT_ID", "17"),
            ("CI_MERGE_REQUEST_IID", "3"),
        ]);
        let t = Thread::gitlab(&e, None).unwrap();
        assert_eq!(
            t.create_url(),
            "https://gitlab.example/api/v4/projects/17/merge_requests/3/notes"
        );
        assert_eq!(
            t.update_url(99),
            "https://gitlab.example/api/v4/projects/17/merge_requests/3/notes/99"
        );
        assert_eq!(t.update_method(), "PUT");
        assert_eq!(t.auth("tok"), ("private-token", "tok".to_owned()));
        let missing = env(&[
            ("CI_API_V4_URL", "https://g/api/v4"),
            ("CI_PROJECT_ID", "x"),
        ]);
        assert_eq!(
            Thread::gitlab(&missing, Some(1)).unwrap_err().to_string(),
            "CI_PROJECT_ID = \"x\" is not a number"
        );
    }

    #[test]
    fn our_comment_is_the_one_with_the_marker() {
        let page = format!(
            r#"[{{"id":1,"body":"LGTM"}},{{"id":2,"body":null}},{{"id":3,"body":"**gitvps** Plan\n{MARKER}\n"}},{{"id":4,"body":"{MARKER}"}}]"#
        );
        let (ours, count) = own_comment(page.as_bytes()).unwrap();
        assert_eq!(ours.unwrap().0, 3);
        assert_eq!(count, 4);
        assert_eq!(own_comment(b"[]").unwrap(), (None, 0));
        assert!(own_comment(b"{\"message\":\"Bad credentials\"}").is_err());
    }

    #[test]
    fn a_comment_with_a_secret_is_refused() {
        let e = env(&[
            ("GITHUB_TOKEN", "ghs_abcdefgh12345"),
            (
                "GITVPS_SSH_PRIVATE_KEY",
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
            ),
            ("GITVPS_SMTP_URL", "x"),
        ]);
        assert!(check_secrets("+ xen10: start domain", &e).is_ok());
        let err = check_secrets("token ghs_abcdefgh12345 here", &e).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the comment contains the value of GITHUB_TOKEN: not posted (secrets never go in a comment)"
        );
        assert!(check_secrets("b3BlbnNzaC1rZXktdjEAAAAA", &e).is_err());
        assert!(
            check_secrets("x", &e).is_ok(),
            "short values are not checked"
        );
    }
}
