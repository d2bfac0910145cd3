//! How long libgit2 waits on a remote repo: to connect, and for each read or write. A hung
//! remote then fails the batch in that time instead of holding every request behind it.

use std::sync::Once;
use std::time::Duration;

static SET: Once = Once::new();

/// Sets libgit2's connect and I/O timeouts to `timeout`, once per process (later calls, as
/// from a second store in one test process, change nothing and say so in the log).
pub fn set_once(timeout: Duration) {
    let mut first = false;
    SET.call_once(|| {
        first = true;
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        #[allow(unsafe_code)]
        // SAFETY: libgit2 keeps both settings in plain C globals, read when a network
        // transport opens or uses a socket. `Once` makes this the only write in the process,
        // and it runs before `GitRepo::start` spawns the committer thread, the one thread of the
        // hooks that opens remotes; spawning orders this write before its reads. Local paths
        // (the demo's repo) open no socket and never read them.
        let set = unsafe {
            git2::opts::set_server_connect_timeout_in_milliseconds(ms)
                .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(ms))
        };
        match set {
            Ok(()) => tracing::debug!(ms, "git network timeouts set"),
            Err(e) => tracing::warn!(error = %e, "cannot set the git network timeouts"),
        }
    });
    if !first {
        tracing::debug!("git network timeouts already set in this process");
    }
}
