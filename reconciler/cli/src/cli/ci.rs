//! `gitvps ci comment`: post the plan comment on the pull request (GitHub) or merge request
//! (GitLab), or update the one posted before (found by its marker), through the forge's API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::Global;
use crate::forge::{self, Forge, MAX_PAGES, PER_PAGE, Thread};

/// `gitvps ci ...`.
#[derive(Debug, Subcommand)]
pub enum CiCommand {
    /// Post the plan comment on the pull or merge request, or update the one posted before.
    Comment(CommentArgs),
}

/// Flags of `gitvps ci comment`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("forge").required(true).args(["github", "gitlab"]))]
pub struct CommentArgs {
    /// GitHub: GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_EVENT_PATH and GITHUB_TOKEN.
    #[arg(long)]
    pub github: bool,
    /// GitLab: CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID and GITVPS_GITLAB_TOKEN.
    #[arg(long)]
    pub gitlab: bool,
    /// The comment, as `gitvps plan --comment-markdown FILE` wrote it.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// The pull or merge request number (read from the CI's variables by default).
    #[arg(long, value_name = "N")]
    pub pr: Option<u64>,
}

/// Runs a `gitvps ci` command.
pub fn run(_g: &Global, c: CiCommand) -> anyhow::Result<i32> {
    match c {
        CiCommand::Comment(a) => comment(&a),
    }
}

fn comment(a: &CommentArgs) -> anyhow::Result<i32> {
    let body = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    anyhow::ensure!(
        body.contains(planner::comment::MARKER),
        "{} is not a comment gitvps plan --comment-markdown wrote (no `{}` line)",
        a.file.display(),
        planner::comment::MARKER
    );
    let env = |k: &str| std::env::var(k).ok();
    let forge = if a.github {
        Forge::GitHub
    } else {
        Forge::GitLab
    };
    let thread = match forge {
        Forge::GitHub => {
            let event = match (a.pr, env("GITHUB_EVENT_PATH")) {
                (None, Some(p)) => {
                    let json =
                        std::fs::read(&p).with_context(|| format!("cannot read the event {p}"))?;
                    Some((p, json))
                }
                _ => None,
            };
            Thread::github(
                &env,
                a.pr,
                event.as_ref().map(|(p, j)| (p.as_str(), j.as_slice())),
            )?
        }
        Forge::GitLab => Thread::gitlab(&env, a.pr)?,
    };
    forge::check_secrets(&body, &env)?;
    let var = forge::token_var(forge);
    let token = env(var)
        .filter(|t| !t.is_empty())
        .ok_or(forge::ForgeError::Missing(var))?;
    let done = super::plan::runtime()?.block_on(post(&thread, &token, &body))?;
    super::emit(&format!("{done}\n"))?;
    Ok(0)
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// One API request; the response body on a 2xx status.
async fn call(
    client: &Client,
    thread: &Thread,
    token: &str,
    method: &str,
    url: &str,
    body: Option<String>,
) -> anyhow::Result<Vec<u8>> {
    use http_body_util::BodyExt as _;
    let (auth, value) = thread.auth(token);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("user-agent", concat!("gitvps/", env!("CARGO_PKG_VERSION")))
        .header("accept", "application/json")
        .header(auth, value);
    if thread.forge == Forge::GitHub {
        req = req.header("x-github-api-version", "2022-11-28");
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.unwrap_or_default(),
        )))
        .with_context(|| format!("{method} {url}: not a valid request"))?;
    let resp = tokio::time::timeout(Duration::from_secs(60), async {
        let resp = client.request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, bytes))
    })
    .await
    .with_context(|| format!("{method} {url}: no answer within 60 s"))?
    .with_context(|| format!("{method} {url}"))?;
    let (status, bytes) = resp;
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
        anyhow::bail!(
            "{method} {url}: the {} API answered {status}: {}",
            thread.forge,
            text.trim()
        );
    }
    Ok(bytes.to_vec())
}

/// Finds our comment (the first with the marker) and updates it, or creates one; says which.
async fn post(thread: &Thread, token: &str, body: &str) -> anyhow::Result<String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .context("cannot set up TLS")?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let mut ours = None;
    for page in 1..=MAX_PAGES {
        let list = call(&client, thread, token, "GET", &thread.list_url(page), None).await?;
        let (found, count) = forge::own_comment(&list)?;
        if found.is_some() {
            ours = found;
            break;
        }
        if count < PER_PAGE {
            break;
        }
    }
    let json = forge::body_json(body);
    match ours {
        Some((_, old)) if old.trim_end() == body.trim_end() => {
            Ok(format!("{} comment unchanged", thread.forge))
        }
        Some((id, _)) => {
            call(
                &client,
                thread,
                token,
                thread.update_method(),
                &thread.update_url(id),
                Some(json),
            )
            .await?;
            Ok(format!("{} comment {id} updated", thread.forge))
        }
        None => {
            call(
                &client,
                thread,
                token,
                "POST",
                &thread.create_url(),
                Some(json),
            )
            .await?;
            Ok(format!("{} comment created", thread.forge))
        }
    }
}
