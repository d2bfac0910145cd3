//! The plan as a pull-request comment (Markdown): counts in its first line, what changed
//! outside gitvps, then one collapsed `<details>` block per node, and a hidden marker by which
//! `gitvps ci comment` finds its own comment again to update it (docs/workflow.md).

use std::fmt::Write as _;

use crate::plan::{NodePlan, Plan, node_heading, node_lines};

/// The hidden line that marks gitvps's own comment.
pub const MARKER: &str = "<!-- gitvps-plan -->";

/// GitHub refuses comments over 65 536 characters; the text is cut well before.
pub const MAX_CHARS: usize = 60_000;

/// `&`, `<` and `>` escaped, for text inside HTML (`<summary>`).
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A code fence longer than any run of backticks in `lines`, so no line can end the block.
fn fence(lines: &[String]) -> String {
    let longest = lines
        .iter()
        .flat_map(|l| l.split(|c| c != '`'))
        .map(str::len)
        .max()
        .unwrap_or(0);
    "`".repeat((longest + 1).max(3))
}

/// A fenced block (`diff`, so `+` and `-` lines are coloured) with at most `budget` characters
/// of lines; the rest is counted in a last line.
fn block(out: &mut String, lines: &[String], budget: &mut usize) {
    let f = fence(lines);
    let _ = writeln!(out, "\n{f}diff");
    for (i, l) in lines.iter().enumerate() {
        if l.len() + 1 > *budget {
            let _ = writeln!(
                out,
                "… {} more line(s): the job's log has the whole plan",
                lines.len() - i
            );
            *budget = 0;
            break;
        }
        *budget -= l.len() + 1;
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out, "{f}");
}

/// The comment for a plan; `about` says what was planned (e.g. `commit 1a2b3c4`), and may be
/// empty.
pub fn plan_comment(plan: &Plan, about: &str) -> String {
    let summary = plan.summary();
    let mut out = format!("**gitvps** {}.", summary.line());
    if !about.is_empty() {
        let _ = write!(out, " ({})", html(about));
    }
    out.push('\n');
    let mut budget = MAX_CHARS;
    if plan.has_drift() {
        let lines: Vec<String> = plan
            .drift
            .iter()
            .flat_map(|(node, d)| d.iter().map(move |d| format!("~ {node}: {}", d.describe())))
            .collect();
        let _ = writeln!(
            out,
            "\n**Changed outside gitvps** since the last apply ({}):",
            lines.len()
        );
        block(&mut out, &lines, &mut budget);
    }
    if !plan.moves.is_empty() {
        let lines: Vec<String> = (plan.moves.iter())
            .map(|m| format!("{} {}", if m.goes() { '>' } else { '!' }, m.line()))
            .collect();
        let _ = writeln!(out, "\n**Moves** ({}):", lines.len());
        block(&mut out, &lines, &mut budget);
    }
    for n in &plan.nodes {
        let lines = node_lines(n);
        let count = match n {
            NodePlan::Reachable { .. } if n.steps().is_empty() => String::new(),
            NodePlan::Reachable { .. } => format!(" {} step(s)", n.steps().len()),
            NodePlan::Unreachable { .. } => String::new(),
        };
        let _ = writeln!(
            out,
            "\n<details><summary>{}{count}</summary>\n",
            html(&node_heading(n))
        );
        if lines.is_empty() {
            out.push_str("Nothing to do.\n");
        } else {
            block(&mut out, &lines, &mut budget);
        }
        out.push_str("\n</details>\n");
    }
    let _ = write!(out, "\n{MARKER}\n");
    out
}

/// The comment when the inventory does not load: its `file:line:col: field: message` lines
/// instead of a plan.
pub fn errors_comment(errors: &model::Diagnostics, about: &str) -> String {
    let mut out = format!(
        "**gitvps** plan: the inventory has {} problem(s); nothing was planned.",
        errors.len()
    );
    if !about.is_empty() {
        let _ = write!(out, " ({})", html(about));
    }
    out.push('\n');
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let mut budget = MAX_CHARS;
    let f = fence(&lines);
    let _ = writeln!(out, "\n{f}");
    for (i, l) in lines.iter().enumerate() {
        if l.len() + 1 > budget {
            let _ = writeln!(out, "… {} more problem(s)", lines.len() - i);
            break;
        }
        budget -= l.len() + 1;
        let _ = writeln!(out, "{l}");
    }
    let _ = write!(out, "{f}\n\n{MARKER}\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_fence_is_longer_than_any_backtick_run() {
        assert_eq!(fence(&["plain".into()]), "```");
        assert_eq!(fence(&["a ```` b".into()]), "`````");
    }

    #[test]
    fn a_long_plan_is_cut_with_a_count() {
        let lines: Vec<String> = (0..10).map(|i| format!("+ line {i}")).collect();
        let mut out = String::new();
        let mut budget = 20;
        block(&mut out, &lines, &mut budget);
        assert!(out.contains("+ line 1\n"), "{out}");
        assert!(!out.contains("+ line 2\n"), "{out}");
        assert!(out.contains("… 8 more line(s)"), "{out}");
    }

    #[test]
    fn an_unreachable_node_and_html_in_a_reason_are_escaped() {
        let plan = Plan {
            version: 1,
            nodes: vec![NodePlan::Unreachable {
                node: "node1".parse().unwrap(),
                address: "192.0.2.1:22".into(),
                reason: "host key <mismatch> & more".into(),
                vps: vec!["xen10".parse().unwrap()],
            }],
            drift: std::collections::BTreeMap::new(),
            made_from: None,
            moves: Vec::new(),
        };
        let c = plan_comment(&plan, "commit <abc>");
        let first = c.lines().next().unwrap();
        assert_eq!(
            first,
            "**gitvps** Plan: 0 to add, 0 to change, 0 to stop or remove, 0 action(s) on 1 node(s); 1 unreachable. (commit &lt;abc&gt;)"
        );
        assert!(
            c.contains("<summary>node1 (192.0.2.1:22): UNREACHABLE: host key &lt;mismatch&gt; &amp; more</summary>"),
            "{c}"
        );
        assert!(c.contains("no steps for its VPSes: xen10"), "{c}");
        assert!(c.trim_end().ends_with(MARKER));
    }

    #[test]
    fn inventory_errors_replace_the_plan() {
        let d = model::Diagnostics(vec![model::diag::Diagnostic {
            file: "inventory/vps/xen02.toml".into(),
            line: 3,
            col: 8,
            field: "node".into(),
            message: "no such node `nodeX`".into(),
        }]);
        let c = errors_comment(&d, "");
        assert!(c.starts_with("**gitvps** plan: the inventory has 1 problem(s)"));
        assert!(
            c.contains("\ninventory/vps/xen02.toml:3:8: node: no such node `nodeX`\n"),
            "{c}"
        );
        assert!(c.contains(MARKER));
    }
}
