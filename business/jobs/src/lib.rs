//! The edge of gitvps's scheduled jobs (`billing run`, `announce`, `ticket reply`): each reads
//! the repo, lets a pure crate decide, commits what changed, pushes, then acts (sends mail).
//!
//! The decisions live in `billing` and `mail::render`; this crate only does the I/O around
//! them, so a crash between the commit and the action is finished by the next run.

pub mod git;
