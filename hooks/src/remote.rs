//! Access to a remote inventory repo (HTTP basic auth, an SSH key, the SSH host key it must
//! show), from the environment only, and the git2 callbacks that hand them over, once.
//!
//! The transports need the cargo features `https` and `ssh` (plain `http://` and `git://` work
//! without them). See `hooks/README.md`, "Remotes".

use std::cell::Cell;

use crate::config::Secret;

/// Environment variable (optional): the user name for the remote (HTTP basic auth or SSH);
/// default: the URL's user, else `git`.
pub const ENV_REPO_USER: &str = "GITVPS_REPO_USER";
/// Environment variable (optional): the password or token of HTTP basic auth.
pub const ENV_REPO_PASSWORD: &str = "GITVPS_REPO_PASSWORD";
/// Environment variable (optional): the SSH private key (its text, OpenSSH or PEM format).
pub const ENV_REPO_SSH_KEY: &str = "GITVPS_REPO_SSH_KEY";
/// Environment variable (required for an SSH remote): the host key the server must show, as
/// in `known_hosts` or `ssh-keyscan` (`ssh-ed25519 AAAA...`): never trusted on first use.
pub const ENV_REPO_HOST_KEY: &str = "GITVPS_REPO_HOST_KEY";

/// Why the remote's settings cannot be used (the message never quotes a secret).
#[derive(Debug, thiserror::Error)]
pub enum RemoteConfigError {
    /// The pinned host key does not parse.
    #[error("{ENV_REPO_HOST_KEY} is not an SSH public key (like `ssh-ed25519 AAAA...`)")]
    BadHostKey,
}

/// The credentials and host key of the remote; never printed.
#[derive(Clone, Default)]
pub struct RepoAuth {
    /// `GITVPS_REPO_USER`.
    pub user: Option<String>,
    /// `GITVPS_REPO_PASSWORD`.
    pub password: Option<Secret>,
    /// `GITVPS_REPO_SSH_KEY`.
    pub ssh_key: Option<Secret>,
    /// `GITVPS_REPO_HOST_KEY`, as the SSH wire encoding of the key.
    pub host_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for RepoAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoAuth")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "set"))
            .field("ssh_key", &self.ssh_key.as_ref().map(|_| "set"))
            .field("host_key", &self.host_key.as_ref().map(|_| "set"))
            .finish()
    }
}

/// The SSH wire encoding of a public key line (`ssh-ed25519 AAAA... [comment]`).
pub fn host_key_bytes(line: &str) -> Result<Vec<u8>, RemoteConfigError> {
    ssh_key::PublicKey::from_openssh(line.trim())
        .ok()
        .and_then(|k| k.to_bytes().ok())
        .ok_or(RemoteConfigError::BadHostKey)
}

impl RepoAuth {
    /// Reads the four variables; each is optional.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<RepoAuth, RemoteConfigError> {
        Ok(RepoAuth {
            user: env(ENV_REPO_USER),
            password: env(ENV_REPO_PASSWORD).map(Secret::new),
            ssh_key: env(ENV_REPO_SSH_KEY).map(Secret::new),
            host_key: env(ENV_REPO_HOST_KEY)
                .map(|k| host_key_bytes(&k))
                .transpose()?,
        })
    }

    /// The callbacks of one fetch, clone or push: credentials handed over once (a second ask
    /// means they were refused: no loop), and an SSH host key checked against the pinned one.
    pub fn callbacks(&self) -> git2::RemoteCallbacks<'_> {
        let mut cbs = git2::RemoteCallbacks::new();
        let asked = Cell::new(0u32);
        cbs.credentials(move |_url, from_url, allowed| {
            // libgit2 asks for the SSH user name first, then for the key.
            if allowed != git2::CredentialType::USERNAME {
                asked.set(asked.get() + 1);
            }
            if asked.get() > 1 {
                return Err(git2::Error::from_str(
                    "the repo refused the credentials from the environment",
                ));
            }
            self.credential(from_url, allowed)
        });
        cbs.certificate_check(move |cert, _host| match cert.as_hostkey() {
            Some(shown) => match &self.host_key {
                Some(pinned) if shown.hostkey() == Some(pinned.as_slice()) => {
                    Ok(git2::CertificateCheckStatus::CertificateOk)
                }
                // libgit2 answers its own words for a refusal: the reason goes to the log.
                Some(_) => Err(refuse_host(format!(
                    "the repo's SSH host key is not the one in {ENV_REPO_HOST_KEY}"
                ))),
                None => Err(refuse_host(format!(
                    "{ENV_REPO_HOST_KEY} is not set: an SSH repo's host key must be pinned"
                ))),
            },
            // TLS: the system's roots decide.
            None => Ok(git2::CertificateCheckStatus::CertificatePassthrough),
        });
        cbs
    }

    fn credential(
        &self,
        from_url: Option<&str>,
        allowed: git2::CredentialType,
    ) -> Result<git2::Cred, git2::Error> {
        let user = self.user.as_deref().or(from_url).unwrap_or("git");
        if allowed.contains(git2::CredentialType::USERNAME) {
            return git2::Cred::username(user);
        }
        if allowed.contains(git2::CredentialType::SSH_KEY)
            && let Some(key) = &self.ssh_key
        {
            return git2::Cred::ssh_key_from_memory(user, None, key.expose_str(), None)
                .map_err(|_| git2::Error::from_str(&format!("{ENV_REPO_SSH_KEY} cannot be read")));
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT)
            && let Some(password) = &self.password
        {
            return git2::Cred::userpass_plaintext(user, password.expose_str());
        }
        Err(git2::Error::from_str(&format!(
            "the repo asks for credentials and none are set ({ENV_REPO_PASSWORD} or {ENV_REPO_SSH_KEY})"
        )))
    }
}

fn refuse_host(why: String) -> git2::Error {
    tracing::error!("{why}");
    git2::Error::from_str(&why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_host_key_is_read_and_nothing_secret_is_printed() {
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host";
        let vars = |k: &str| match k {
            ENV_REPO_PASSWORD => Some("hunter2-secret".to_owned()),
            ENV_REPO_HOST_KEY => Some(line.to_owned()),
            _ => None,
        };
        let auth = RepoAuth::from_env(vars).unwrap();
        assert_eq!(auth.host_key.as_ref().map(Vec::len), Some(51));
        assert!(!format!("{auth:?}").contains("hunter2"));
        let bad = |k: &str| (k == ENV_REPO_HOST_KEY).then(|| "ssh-ed25519 nope".to_owned());
        assert!(matches!(
            RepoAuth::from_env(bad),
            Err(RemoteConfigError::BadHostKey)
        ));
    }
}
