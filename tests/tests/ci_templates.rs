//! The CI templates in `ci/`: valid YAML, and every `gitvps` command they run exists in the
//! CLI with exactly those flags (parsed by the real clap definition).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use clap::Parser;
use yaml_rust2::{Yaml, YamlLoader};

fn templates() -> Vec<PathBuf> {
    let ci = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci");
    vec![
        ci.join("github/gitvps.yml"),
        ci.join("gitlab/.gitlab-ci.yml"),
    ]
}

/// Every string in a YAML document (scripts are strings, in lists or blocks).
fn strings(y: &Yaml, out: &mut Vec<String>) {
    match y {
        Yaml::String(s) => out.push(s.clone()),
        Yaml::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Yaml::Hash(h) => h.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out);
        }),
        _ => {}
    }
}

/// The `gitvps ...` command lines in a script: from the binary's name to the first shell
/// operator, with `"$VAR"` words kept as placeholders.
fn gitvps_commands(script: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in script.lines() {
        let mut rest = line;
        while let Some(i) = rest.find("target/release/gitvps ") {
            let tail = &rest[i + "target/release/gitvps ".len()..];
            let end = tail.find(['>', '|', ';', '&', ')']).unwrap_or(tail.len());
            let mut words: Vec<String> = std::iter::once("gitvps".to_owned())
                .chain(tail[..end].split_whitespace().map(str::to_owned))
                .collect();
            // `2> file`: the digit belongs to the redirection.
            if tail[end..].starts_with('>')
                && words
                    .last()
                    .is_some_and(|w| w.bytes().all(|b| b.is_ascii_digit()))
            {
                words.pop();
            }
            out.push(words);
            rest = &tail[end..];
        }
    }
    out
}

/// A job's strings (GitHub's `jobs.<name>`, GitLab's top-level `<name>`) and the `gitvps`
/// command lines they run, in order.
fn job_commands(text: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let doc = &YamlLoader::load_from_str(text).unwrap()[0];
    let job = match &doc["jobs"][name] {
        Yaml::BadValue => &doc[name],
        j => j,
    };
    let mut all = Vec::new();
    strings(job, &mut all);
    let commands = all
        .iter()
        .flat_map(|s| gitvps_commands(s))
        .map(|c| c.join(" "))
        .collect();
    (all, commands)
}

#[test]
fn the_templates_are_valid_yaml_and_run_only_real_commands() {
    let mut seen = Vec::new();
    for path in templates() {
        let text = std::fs::read_to_string(&path).unwrap();
        let docs =
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(docs.len(), 1, "{}", path.display());
        let mut all = Vec::new();
        strings(&docs[0], &mut all);
        let commands: Vec<Vec<String>> = all.iter().flat_map(|s| gitvps_commands(s)).collect();
        assert!(commands.len() >= 3, "{}: {commands:?}", path.display());
        for c in commands {
            if let Err(e) = gitvps::cli::Cli::try_parse_from(&c) {
                panic!(
                    "{}: `{}` is not a gitvps command line: {e}",
                    path.display(),
                    c.join(" ")
                );
            }
            seen.push(c.get(1).cloned().unwrap_or_default());
        }
        // Secrets come from the CI's secret store, never from the file.
        assert!(
            text.contains("GITVPS_SSH_PRIVATE_KEY"),
            "{}",
            path.display()
        );
        assert!(
            !text.contains("BEGIN OPENSSH PRIVATE KEY"),
            "{}",
            path.display()
        );
    }
    for needed in ["validate", "plan", "apply", "mail", "billing"] {
        assert!(
            seen.iter().any(|s| s == needed),
            "no template runs gitvps {needed}: {seen:?}"
        );
    }
}

/// The apply-on-merge job sends the mail the hooks queued in the commits it applies, after
/// the apply, in both templates.
#[test]
fn the_apply_job_sends_the_outbox_after_applying() {
    for path in templates() {
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap();
        let apply = &docs[0]["jobs"]["apply"];
        let job = if apply.is_badvalue() {
            &docs[0]["apply"]
        } else {
            apply
        };
        let mut all = Vec::new();
        strings(job, &mut all);
        let commands: Vec<String> = all
            .iter()
            .flat_map(|s| gitvps_commands(s))
            .map(|c| c.join(" "))
            .collect();
        let at = |prefix: &str| commands.iter().position(|c| c.starts_with(prefix));
        let (apply, send) = (at("gitvps apply"), at("gitvps mail send"));
        assert!(
            apply.is_some() && send > apply,
            "{}: the apply job runs {commands:?}",
            path.display()
        );
    }
}

#[test]
fn a_command_with_an_unknown_flag_is_caught() {
    let bad =
        gitvps_commands("GITVPS_SSH_KEY=k ./target/release/gitvps apply --stauts > apply.txt");
    assert_eq!(bad, vec![vec!["gitvps", "apply", "--stauts"]]);
    assert!(gitvps::cli::Cli::try_parse_from(&bad[0]).is_err());
}

/// The apply-on-merge job publishes the DNS zones after applying, guarded by a check that
/// is true exactly when `gitvps.toml` names a `[[dns.server]]` (run here with `sh` on the
/// example `gitvps.toml`, whose servers are commented out, and on one that names a server).
#[test]
fn the_apply_job_publishes_dns_after_applying_when_a_server_is_named() {
    const GUARD: &str = r"grep -q '^\[\[dns\.server\]\]' gitvps.toml";
    for path in templates() {
        let text = std::fs::read_to_string(&path).unwrap();
        let (all, commands) = job_commands(&text, "apply");
        let at = |c: &str| commands.iter().position(|x| x == c);
        assert!(
            at("gitvps apply --status").is_some()
                && at("gitvps dns apply") > at("gitvps apply --status"),
            "{}: {commands:?}",
            path.display()
        );
        let guarded = all
            .iter()
            .any(|s| s.contains("gitvps dns apply") && s.contains(GUARD));
        assert!(guarded, "{}: dns apply without the guard", path.display());
    }
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gitvps.toml");
    let mut toml = std::fs::read_to_string(example).unwrap();
    let guard = |toml: &str| {
        std::fs::write(dir.path().join("gitvps.toml"), toml).unwrap();
        std::process::Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .current_dir(dir.path())
            .status()
            .unwrap()
            .success()
    };
    assert!(toml.contains("# [[dns.server]]"));
    assert!(!guard(&toml), "commented out: no DNS to publish");
    toml.push_str("\n[[dns.server]]\naddress = \"192.0.2.53\"\n");
    assert!(guard(&toml));
}

/// The plan job writes the plan comment and posts it with `gitvps ci comment`, as
/// docs/workflow.md documents: GitHub with the workflow's own token and the pull-requests
/// permission, GitLab with the project access token variable, even after a failed validation.
#[test]
fn the_plan_job_comments_the_plan_on_the_pull_request() {
    for (path, forge, token) in [
        (
            &templates()[0],
            "--github",
            "GITHUB_TOKEN: ${{ github.token }}",
        ),
        (&templates()[1], "--gitlab", "$GITVPS_GITLAB_TOKEN"),
    ] {
        let text = std::fs::read_to_string(path).unwrap();
        let (_, commands) = job_commands(&text, "plan");
        let at = |c: &str| commands.iter().position(|x| x.starts_with(c));
        let plan = at("gitvps plan --out plan.json --comment-markdown plan.md");
        let post = at(&format!("gitvps ci comment {forge} --file plan.md"));
        assert!(
            plan.is_some() && post > plan,
            "{}: {commands:?}",
            path.display()
        );
        assert!(text.contains(token), "{}", path.display());
    }
    let github = std::fs::read_to_string(&templates()[0]).unwrap();
    let doc = &YamlLoader::load_from_str(&github).unwrap()[0];
    assert_eq!(
        doc["permissions"]["pull-requests"].as_str(),
        Some("write"),
        "the workflow's token may comment"
    );
    let steps = doc["jobs"]["plan"]["steps"].as_vec().unwrap();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"].as_str() == Some(name))
            .unwrap()
    };
    assert_eq!(step("Plan")["if"].as_str(), Some("always()"));
    assert!(
        step("Comment the plan on the pull request")["if"]
            .as_str()
            .unwrap()
            .starts_with("always()")
    );
}

/// A merge applies the reviewed plan (docs/workflow.md): the apply job fetches the `plan.json`
/// the plan job kept as an artifact for the pull request's head commit and runs
/// `gitvps apply --reviewed` on it (falling back to a fresh plan only when no pull request
/// made the commit), before the DNS and the status are published.
#[test]
fn the_merge_applies_the_reviewed_plan_artifact() {
    for (path, fetch) in [
        (&templates()[0], "gh run download \"$run\""),
        (&templates()[1], "jobs/$job/artifacts/plan.json"),
    ] {
        let text = std::fs::read_to_string(path).unwrap();
        let (all, commands) = job_commands(&text, "apply");
        let at = |c: &str| commands.iter().position(|x| x.starts_with(c));
        let reviewed = at("gitvps apply --reviewed");
        assert!(reviewed.is_some(), "{}: {commands:?}", path.display());
        assert!(
            commands[reviewed.unwrap()].ends_with(" --status"),
            "{}: {commands:?}",
            path.display()
        );
        assert!(at("gitvps dns apply") > reviewed, "{}", path.display());
        // The plan is fetched in the same job, before it is applied.
        let fetched = all.iter().position(|s| s.contains(fetch));
        let applied = all
            .iter()
            .position(|s| s.contains("gitvps apply --reviewed"));
        assert!(
            fetched.is_some() && fetched <= applied,
            "{}: the reviewed plan is not fetched before it is applied",
            path.display()
        );
        // The plan job keeps plan.json, which is what is fetched.
        let (plan_job, _) = job_commands(&text, "plan");
        assert!(
            plan_job.iter().any(|s| s == "plan.json"),
            "{}: the plan job keeps no plan.json artifact",
            path.display()
        );
    }
    let github = std::fs::read_to_string(&templates()[0]).unwrap();
    let doc = &YamlLoader::load_from_str(&github).unwrap()[0];
    assert_eq!(
        doc["permissions"]["actions"].as_str(),
        Some("read"),
        "the workflow's token may download another run's artifact"
    );
    let plan_steps = doc["jobs"]["plan"]["steps"].as_vec().unwrap();
    assert!(
        plan_steps
            .iter()
            .any(|s| s["with"]["name"].as_str() == Some("gitvps-plan")),
        "the plan job uploads the artifact the apply job downloads"
    );
    assert!(github.contains("--name gitvps-plan"));
}
