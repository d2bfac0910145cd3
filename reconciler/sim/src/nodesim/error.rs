//! What can go wrong in a stand-in beyond the real tool's own messages: a file under the node
//! root cannot be used, a state file is corrupt, a name or path cannot be taken.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// `Result` with [`SimError`] as the default error.
pub(crate) type Result<T, E = SimError> = std::result::Result<T, E>;

/// What was being done to a file when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    /// Creating a file or folder.
    Create,
    /// Opening a file.
    Open,
    /// Taking the state lock on a file.
    Lock,
    /// Reading a file or listing a folder.
    Read,
    /// Looking at a file's metadata.
    Stat,
    /// Setting a new file's length.
    Size,
    /// Changing a file's length.
    Resize,
    /// Writing a file.
    Write,
    /// Renaming a file into place.
    Rename,
    /// Removing a file.
    Remove,
    /// Copying a file.
    Copy,
    /// Setting a file's mode.
    Chmod,
    /// Making a path absolute.
    Resolve,
}

impl fmt::Display for FileOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileOp::Create => "create",
            FileOp::Open => "open",
            FileOp::Lock => "lock",
            FileOp::Read => "read",
            FileOp::Stat => "stat",
            FileOp::Size => "size",
            FileOp::Resize => "resize",
            FileOp::Write => "write",
            FileOp::Rename => "rename",
            FileOp::Remove => "remove",
            FileOp::Copy => "copy",
            FileOp::Chmod => "chmod",
            FileOp::Resolve => "resolve",
        })
    }
}

/// A file operation that failed: what, on which path, and the system's reason.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}", .path.display())]
pub struct FileError {
    /// What was being done.
    pub op: FileOp,
    /// The file or folder.
    pub path: PathBuf,
    /// The system's reason.
    #[source]
    pub source: io::Error,
}

impl FileError {
    /// `op` on `path` failed with `source`.
    pub(crate) fn new(op: FileOp, path: &Path, source: io::Error) -> FileError {
        FileError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Attaches the operation and the path to an I/O result.
pub(crate) trait OnFile<T> {
    /// `self`, its error (if any) as a [`FileError`] for `op` on `path`.
    fn on(self, op: FileOp, path: &Path) -> Result<T, FileError>;
}

impl<T> OnFile<T> for io::Result<T> {
    fn on(self, op: FileOp, path: &Path) -> Result<T, FileError> {
        self.map_err(|source| FileError::new(op, path, source))
    }
}

/// Why a stand-in (or [`super::install`], [`super::create_vg`]) could not do its work; the
/// tools print it with its causes after their prefix and exit with their failure code.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file or folder under the node root could not be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// A state file holds JSON that is not the record it should be.
    #[error("corrupt state file {}", .path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
    /// A state record could not be encoded as JSON.
    #[error("cannot encode {what}")]
    Encode {
        /// Which record ("domain state", "state").
        what: &'static str,
        /// The encoder's reason.
        #[source]
        source: serde_json::Error,
    },
    /// `xl console` could not read what was typed.
    #[error("cannot read the console input")]
    ConsoleInput(#[source] io::Error),
    /// A volume group name LVM would refuse, or a folder of ROOT/dev that is never one.
    #[error("invalid volume group name {0:?}")]
    InvalidVgName(String),
    /// A path to write into a wrapper script that is not UTF-8.
    #[error("{} is not UTF-8, which a wrapper script cannot name", .0.display())]
    NotUtf8(PathBuf),
}
