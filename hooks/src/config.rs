//! What the hooks need to run: the repo to clone, the secrets (from the environment only) and
//! the limits. Secrets are wrapped so that they never show in `Debug` output or logs.

use std::path::PathBuf;
use std::time::Duration;

/// Environment variable: the inventory repo the hooks clone and push (URL or path).
pub const ENV_REPO: &str = "GITVPS_REPO";
/// Environment variable: the key that signs customer session tokens.
pub const ENV_TOKEN_SECRET: &str = "GITVPS_TOKEN_SECRET";
/// Environment variable: the Stripe API key.
pub const ENV_STRIPE_KEY: &str = "STRIPE_SECRET_KEY";
/// Environment variable: the Stripe webhook signing secrets, comma-separated.
pub const ENV_STRIPE_WEBHOOK: &str = "STRIPE_WEBHOOK_SECRET";
/// Environment variable (optional): another base URL for the Stripe API (`http://` or
/// `https://`), for a local stand-in in tests and staging; unset in production.
pub const ENV_STRIPE_API: &str = "GITVPS_STRIPE_API_URL";
/// Environment variable (optional): where the clone is cached (`/tmp/gitvps-hooks` by default).
pub const ENV_CACHE: &str = "GITVPS_HOOKS_CACHE";
/// Environment variable (optional): the branch that holds the desired state (`main`).
pub const ENV_BRANCH: &str = "GITVPS_BRANCH";
/// Environment variable (optional): the key that seals customers' TOTP secrets (64 hex digits).
pub const ENV_TOTP_KEY: &str = "GITVPS_TOTP_KEY";
/// Environment variable (optional): seconds a remote repo may take to accept a connection and
/// to answer each read or write (1 to 600; default 30). A hung remote fails requests in that
/// time instead of holding every request behind it.
pub const ENV_GIT_TIMEOUT: &str = "GITVPS_GIT_TIMEOUT_SECS";
/// Environment variable (optional): where mail that cannot wait goes (a password reset's link):
/// `smtp://`, `smtps://` or `maildir:///path`, as for `gitvps mail send`.
pub const ENV_SMTP_URL: &str = mail::smtp::URL_ENV;
/// Environment variable (optional): an extra root CA (PEM file) for the SMTP server.
pub const ENV_SMTP_CA: &str = mail::smtp::CA_ENV;

/// Shortest token secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// A secret value: never printed, never logged.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into().into_bytes())
    }

    /// The bytes, for the one place that uses them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The text, for APIs that take a string (the Stripe client).
    pub fn expose_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// A fresh random secret (for a local server started without `GITVPS_TOKEN_SECRET`:
    /// its tokens die with the process).
    pub fn random() -> Result<Secret, std::io::Error> {
        let bytes: [u8; 32] = random_bytes()?;
        Ok(Secret(crate::auth::hex(&bytes).into_bytes()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], std::io::Error> {
    use std::io::Read;
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// Why the configuration is incomplete.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// The token secret is too short to be a key.
    #[error("{ENV_TOKEN_SECRET} must be at least {MIN_SECRET_LEN} bytes long")]
    WeakSecret,
    /// No random source for a generated secret.
    #[error("cannot read random bytes for a session key")]
    Random(#[source] std::io::Error),
    /// The TOTP key is not 64 hex digits.
    #[error("{ENV_TOTP_KEY} must be 64 hex digits (32 bytes)")]
    BadTotpKey,
    /// The mail URL or its CA cannot be used (the message never quotes the URL).
    #[error("outgoing mail ({ENV_SMTP_URL}, {ENV_SMTP_CA}) cannot be used")]
    Mail(#[source] mail::SendError),
    /// `GITVPS_STRIPE_API_URL` is not an HTTP(S) URL.
    #[error("GITVPS_STRIPE_API_URL must be an http:// or https:// URL, not `{0}`")]
    StripeApi(String),
    /// The remote repo's settings cannot be used.
    #[error("the remote repo's settings")]
    Remote(#[from] crate::remote::RemoteConfigError),
    /// The git timeout is not a number of seconds from 1 to 600.
    #[error("{ENV_GIT_TIMEOUT} must be a number of seconds from 1 to 600")]
    BadGitTimeout,
}

/// Stripe settings; without them, renewals and orders answer 503 and webhooks 503.
#[derive(Debug, Clone, Default)]
pub struct StripeConfig {
    /// `STRIPE_SECRET_KEY`: creates Checkout Sessions. `None`: renew and order are off.
    pub secret_key: Option<Secret>,
    /// `STRIPE_WEBHOOK_SECRET`: every secret accepted for webhook signatures (rotation).
    pub webhook_secrets: Vec<Secret>,
    /// Base URL of the Stripe API (`None`: Stripe's own; `GITVPS_STRIPE_API_URL`); tests point
    /// it at a stand-in.
    pub api_base: Option<String>,
    /// Seconds a webhook signature's timestamp may differ from now (Stripe uses 300).
    pub tolerance_secs: i64,
}

/// Everything the hooks need.
#[derive(Clone)]
pub struct Config {
    /// The inventory repo: a path or a URL (`GITVPS_REPO`). May hold credentials: never logged.
    pub repo: String,
    /// Branch of the desired state (`GITVPS_BRANCH`, default `main`).
    pub branch: String,
    /// Folder for the cached clone; survives warm Lambda invocations (`GITVPS_HOOKS_CACHE`).
    pub cache_dir: PathBuf,
    /// Signs session tokens (`GITVPS_TOKEN_SECRET`).
    pub token_secret: Secret,
    /// How long a session token lasts.
    pub token_ttl: Duration,
    /// Stripe keys and webhook secrets.
    pub stripe: StripeConfig,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Attempts at pushing a batch before giving up (each lost race waits a random time, up to
    /// 1.28 s, then fetches and re-applies).
    pub push_tries: u32,
    /// How long a remote repo may take to accept a connection and to answer each read or write
    /// (`GITVPS_GIT_TIMEOUT_SECS`, default 30 s). libgit2 holds it per process: the first
    /// store started in a process sets it ([`crate::git_timeout`]).
    pub git_timeout: Duration,
    /// `true`: push every commit. `false`: commit in the cached clone only (benchmarks, dry runs).
    pub publish: bool,
    /// A folder served at `/` beside the API (the customer site), for `gitvps serve --site`.
    pub static_dir: Option<PathBuf>,
    /// Seals customers' TOTP secrets (`GITVPS_TOTP_KEY`). `None`: two-factor login cannot be
    /// turned on, and a customer who has it cannot log in (fails closed).
    pub totp_key: Option<Secret>,
    /// Where a password reset's mail is sent the moment its record is committed
    /// (`GITVPS_SMTP_URL`: SMTP or `maildir:///path`; it may hold the SMTP password). `None`:
    /// reset requests are logged as errors and nothing is committed or mailed.
    pub mail_url: Option<Secret>,
    /// An extra root CA for that SMTP server (`GITVPS_SMTP_CA`).
    pub mail_ca: Option<PathBuf>,
    /// Credentials and the pinned SSH host key of a remote repo (`GITVPS_REPO_USER`,
    /// `GITVPS_REPO_PASSWORD`, `GITVPS_REPO_SSH_KEY`, `GITVPS_REPO_HOST_KEY`).
    pub remote: crate::remote::RepoAuth,
    /// Draws the usage graphs of `GET /api/vps/{id}/graph` (`gitvps serve --monitor-db`, the
    /// demo). `None`: that route answers 503 `graphs_unavailable`.
    pub graphs: Option<std::sync::Arc<dyn crate::graphs::GraphSource>>,
}

impl Config {
    /// A configuration with the defaults, for `repo`, signing tokens with `token_secret`.
    pub fn new(repo: impl Into<String>, token_secret: Secret) -> Config {
        Config {
            repo: repo.into(),
            branch: "main".to_owned(),
            cache_dir: std::env::temp_dir().join("gitvps-hooks"),
            token_secret,
            token_ttl: Duration::from_secs(3600),
            stripe: StripeConfig {
                tolerance_secs: 300,
                ..StripeConfig::default()
            },
            body_limit: 64 * 1024,
            push_tries: 20,
            git_timeout: Duration::from_secs(30),
            publish: true,
            static_dir: None,
            totp_key: None,
            mail_url: None,
            mail_ca: None,
            remote: crate::remote::RepoAuth::default(),
            graphs: None,
        }
    }

    /// Reads the configuration from the environment (the Lambda binary's way).
    ///
    /// `GITVPS_REPO` and `GITVPS_TOKEN_SECRET` are required; the Stripe variables are
    /// optional (without them, payments are off).
    pub fn from_env() -> Result<Config, ConfigError> {
        let repo = env(ENV_REPO).ok_or(ConfigError::Missing(ENV_REPO))?;
        let secret = env(ENV_TOKEN_SECRET).ok_or(ConfigError::Missing(ENV_TOKEN_SECRET))?;
        Config::with_env_defaults(repo, Some(secret))
    }

    /// The configuration of a local server (`gitvps serve --repo DIR`): the repo is given;
    /// everything else comes from the environment when set. Without `GITVPS_TOKEN_SECRET`, a
    /// random key is made for this process.
    pub fn local(repo: impl Into<String>) -> Result<Config, ConfigError> {
        let mut repo: String = repo.into();
        // A folder is named absolutely: the clone's `origin` must not depend on the cwd.
        if let Some(p) = crate::store::local_path(&repo)
            && let Ok(abs) = std::fs::canonicalize(&p)
            && let Some(s) = abs.to_str()
        {
            repo = s.to_owned();
        }
        Config::with_env_defaults(repo, env(ENV_TOKEN_SECRET))
    }

    fn with_env_defaults(repo: String, secret: Option<String>) -> Result<Config, ConfigError> {
        let token_secret = match secret {
            Some(s) if s.len() >= MIN_SECRET_LEN => Secret::new(s),
            Some(_) => return Err(ConfigError::WeakSecret),
            None => Secret::random().map_err(ConfigError::Random)?,
        };
        let mut cfg = Config::new(repo, token_secret);
        if let Some(b) = env(ENV_BRANCH) {
            cfg.branch = b;
        }
        if let Some(c) = env(ENV_CACHE) {
            cfg.cache_dir = PathBuf::from(c);
        }
        if let Some(t) = env(ENV_GIT_TIMEOUT) {
            let secs = t
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=600).contains(s))
                .ok_or(ConfigError::BadGitTimeout)?;
            cfg.git_timeout = Duration::from_secs(secs);
        }
        cfg.stripe.secret_key = env(ENV_STRIPE_KEY).map(Secret::new);
        if let Some(url) = env(ENV_STRIPE_API) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::StripeApi(url));
            }
            cfg.stripe.api_base = Some(url);
        }
        if let Some(k) = env(ENV_TOTP_KEY) {
            let k = Secret::new(k);
            crate::twofactor::check_key(&k).map_err(|_| ConfigError::BadTotpKey)?;
            cfg.totp_key = Some(k);
        }
        cfg.remote = crate::remote::RepoAuth::from_env(env)?;
        cfg.mail_ca = env(ENV_SMTP_CA).map(PathBuf::from);
        if let Some(url) = env(ENV_SMTP_URL) {
            // Checked now (a bad URL or CA stops the start), built again for each mail.
            mail::Outgoing::from_url(&url, cfg.mail_ca.as_deref()).map_err(ConfigError::Mail)?;
            cfg.mail_url = Some(Secret::new(url));
        }
        cfg.stripe.webhook_secrets = env(ENV_STRIPE_WEBHOOK)
            .map(|s| parse_secret_list(&s))
            .unwrap_or_default();
        Ok(cfg)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("repo", &redact_url(&self.repo))
            .field("branch", &self.branch)
            .field("cache_dir", &self.cache_dir)
            .field("token_ttl", &self.token_ttl)
            .field("stripe", &self.stripe)
            .field("body_limit", &self.body_limit)
            .field("git_timeout", &self.git_timeout)
            .field("push_tries", &self.push_tries)
            .field("publish", &self.publish)
            .field("static_dir", &self.static_dir)
            .field("totp_key", &self.totp_key.as_ref().map(|_| "set"))
            .field("mail_url", &self.mail_url.as_ref().map(|_| "set"))
            .field("mail_ca", &self.mail_ca)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// A repo URL with any user and password replaced by `***`, fit for logs.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, path)) if authority.contains('@') => {
                let host = authority.rsplit('@').next().unwrap_or_default();
                format!("{scheme}://***@{host}/{path}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Splits a comma-separated list of secrets, dropping blanks.
pub fn parse_secret_list(s: &str) -> Vec<Secret> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("whsec_abc");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        let mut cfg = Config::new("/tmp/x", s);
        cfg.stripe.webhook_secrets = parse_secret_list("whsec_one, ,whsec_two");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("whsec"), "{shown}");
        assert_eq!(cfg.stripe.webhook_secrets.len(), 2);
        assert_eq!(cfg.stripe.webhook_secrets[1].expose(), b"whsec_two");
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://x-access-token:ghp_123@github.com/a/b.git"),
            "https://***@github.com/a/b.git"
        );
        assert_eq!(redact_url("/srv/inventory.git"), "/srv/inventory.git");
        let cfg = Config::new("https://u:pw@h/r.git", Secret::new("k"));
        assert!(!format!("{cfg:?}").contains("pw"));
    }

    #[test]
    fn random_secrets_differ() {
        let a = Secret::random().unwrap();
        let b = Secret::random().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
    }
}
