//! The node protocol: the marker lines the node scripts print and the executor reads, as one
//! enum that both sides use, so the writer and the reader cannot drift apart.
//!
//! The scripts in `node/` never spell a marker: they print the `M_*` variables that
//! [`sh_header`] defines, one per kind of marker, and the executor parses lines with
//! [`Marker::parse`].

use std::fmt;

/// Exit code of the apply script when another apply holds the node's lock too long.
pub const EXIT_LOCKED: u32 = 75;

/// Seconds an apply waits for another apply on the same node to finish.
pub const LOCK_WAIT_SECS: u32 = 600;

/// One line of the apply protocol, as printed by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// Another apply held the node's lock for [`LOCK_WAIT_SECS`]: nothing was done.
    Locked,
    /// The observe report (the lines before this one) is complete; the node waits for `go`.
    Observed,
    /// Step N starts.
    Begin(usize),
    /// Step N succeeded.
    Ok(usize),
    /// Step N was skipped: an earlier step of its VPS failed.
    Skip(usize),
    /// A line of what failing step N printed (its last 30 lines come before its `Fail`).
    Out {
        /// The step's index.
        step: usize,
        /// The line.
        text: String,
    },
    /// Step N failed with this exit code.
    Fail {
        /// The step's index.
        step: usize,
        /// Its exit code.
        rc: i32,
    },
    /// Every step reported: the script ran to its end.
    Done,
}

/// The kinds of marker, each with its sh variable and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Locked,
    Observed,
    Begin,
    Ok,
    Skip,
    Out,
    Fail,
    Done,
}

impl Kind {
    /// The sh variable that holds the tag in the node scripts.
    fn var(self) -> &'static str {
        match self {
            Kind::Locked => "M_LOCKED",
            Kind::Observed => "M_OBSERVED",
            Kind::Begin => "M_BEGIN",
            Kind::Ok => "M_OK",
            Kind::Skip => "M_SKIP",
            Kind::Out => "M_OUT",
            Kind::Fail => "M_FAIL",
            Kind::Done => "M_DONE",
        }
    }

    /// The first word of the line.
    fn tag(self) -> &'static str {
        match self {
            Kind::Locked => "@@locked",
            Kind::Observed => "@@observed",
            Kind::Begin => "@@begin",
            Kind::Ok => "@@ok",
            Kind::Skip => "@@skip",
            Kind::Out => "@@out",
            Kind::Fail => "@@fail",
            Kind::Done => "@@done",
        }
    }
}

const KINDS: [Kind; 8] = [
    Kind::Locked,
    Kind::Observed,
    Kind::Begin,
    Kind::Ok,
    Kind::Skip,
    Kind::Out,
    Kind::Fail,
    Kind::Done,
];

impl Marker {
    fn kind(&self) -> Kind {
        match self {
            Marker::Locked => Kind::Locked,
            Marker::Observed => Kind::Observed,
            Marker::Begin(_) => Kind::Begin,
            Marker::Ok(_) => Kind::Ok,
            Marker::Skip(_) => Kind::Skip,
            Marker::Out { .. } => Kind::Out,
            Marker::Fail { .. } => Kind::Fail,
            Marker::Done => Kind::Done,
        }
    }

    /// Reads one line the node printed; `None` for a line that is no marker (or a marker whose
    /// step number is missing or not a number).
    pub fn parse(line: &str) -> Option<Marker> {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let kind = KINDS.into_iter().find(|k| k.tag() == tag)?;
        let mut words = rest.split(' ');
        let mut step = || words.next()?.trim().parse::<usize>().ok();
        Some(match kind {
            Kind::Locked => Marker::Locked,
            Kind::Observed => Marker::Observed,
            Kind::Done => Marker::Done,
            Kind::Begin => Marker::Begin(step()?),
            Kind::Ok => Marker::Ok(step()?),
            Kind::Skip => Marker::Skip(step()?),
            Kind::Out => {
                let (n, text) = rest.split_once(' ').unwrap_or((rest, ""));
                Marker::Out {
                    step: n.trim().parse().ok()?,
                    text: text.to_owned(),
                }
            }
            Kind::Fail => {
                let step_no = step()?;
                let rc = words
                    .next()
                    .and_then(|r| r.trim().parse().ok())
                    .unwrap_or(-1);
                Marker::Fail { step: step_no, rc }
            }
        })
    }
}

/// The line as the node prints it.
impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = self.kind().tag();
        match self {
            Marker::Locked | Marker::Observed | Marker::Done => f.write_str(tag),
            Marker::Begin(i) | Marker::Ok(i) | Marker::Skip(i) => write!(f, "{tag} {i}"),
            Marker::Out { step, text } => write!(f, "{tag} {step} {text}"),
            Marker::Fail { step, rc } => write!(f, "{tag} {step} {rc}"),
        }
    }
}

/// The sh lines put in front of every node script that prints markers: the `M_*` tag
/// variables, the lock wait and the locked exit code.
pub fn sh_header() -> String {
    // One command of assignments, so the directive covers them all: not every script prints
    // every marker.
    let mut s = String::from("# shellcheck disable=SC2034\n");
    for kind in KINDS {
        s.push_str(kind.var());
        s.push('=');
        s.push_str(kind.tag());
        s.push_str(" \\\n");
    }
    s.push_str(&format!(
        "LOCK_WAIT_SECS={LOCK_WAIT_SECS} EXIT_LOCKED={EXIT_LOCKED}\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn marker() -> impl Strategy<Value = Marker> {
        prop_oneof![
            Just(Marker::Locked),
            Just(Marker::Observed),
            Just(Marker::Done),
            any::<usize>().prop_map(Marker::Begin),
            any::<usize>().prop_map(Marker::Ok),
            any::<usize>().prop_map(Marker::Skip),
            (any::<usize>(), "[^\n]*").prop_map(|(step, text)| Marker::Out { step, text }),
            (any::<usize>(), any::<i32>()).prop_map(|(step, rc)| Marker::Fail { step, rc }),
        ]
    }

    proptest! {
        /// What the writer prints, the reader reads back.
        #[test]
        fn every_marker_reads_back(m in marker()) {
            prop_assert_eq!(Marker::parse(&m.to_string()), Some(m));
        }
    }

    #[test]
    fn other_lines_are_no_markers() {
        for l in [
            "",
            "@@",
            "@@begin",
            "@@begin x",
            "@@qmp {}",
            "hello @@ok 1",
            "@@oks 1",
        ] {
            assert_eq!(Marker::parse(l), None, "{l:?}");
        }
    }

    /// The node scripts print markers only through the header's variables, and every variable
    /// they use is defined there.
    #[test]
    fn the_node_scripts_spell_no_marker() {
        let header = sh_header();
        for (name, text) in [
            ("apply.sh", include_str!("../node/apply.sh")),
            ("steps.sh", include_str!("../node/steps.sh")),
        ] {
            assert!(!text.contains("@@"), "{name} spells a marker");
            for var in text.split('$').skip(1) {
                let v: String = var
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if v.starts_with("M_") {
                    assert!(header.contains(&format!("{v}=")), "{name} uses {v}");
                }
            }
        }
    }
}
