//! The manual as a new user reads it: the README front page and the book in `docs/src/`.
//! Every relative link resolves (file and anchor); every page is in the book's summary;
//! every config block is a valid config as printed; every shell block says which test runs
//! it (or why none can); and "Try it by hand" runs from nothing to a webhook.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::env::TestEnv;
use crate::support::netns;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The README and every page of the book, with their text.
fn pages() -> Vec<(PathBuf, String)> {
    let mut files = vec![Path::new(ROOT).join("README.md")];
    let dir = Path::new(ROOT).join("docs/src");
    let mut book: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    book.sort();
    files.extend(book);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}"));
            (p, text)
        })
        .collect()
}

/// The fenced blocks of a page: (the line before the fence's marker comment, if any,
/// the info string, the text, the line number).
fn blocks(text: &str) -> Vec<(Option<String>, String, String, usize)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if let Some(info) = lines[i].strip_prefix("```") {
            let marker = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .filter(|l| l.starts_with("<!--"))
                .map(|l| l.to_string());
            let start = i + 1;
            let mut j = start;
            while j < lines.len() && !lines[j].starts_with("```") {
                j += 1;
            }
            out.push((
                marker,
                info.trim().to_string(),
                lines[start..j.min(lines.len())].join("\n"),
                start,
            ));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// A heading's anchor as mdBook and GitHub make it.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut fence = false;
    let mut out = BTreeSet::new();
    for l in text.lines() {
        if l.starts_with("```") {
            fence = !fence;
        }
        if !fence && l.starts_with('#') {
            out.insert(slug(l.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_relative_link_resolves_to_a_file_and_its_anchor() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for (path, text) in pages() {
        let dir = path.parent().unwrap_or(Path::new(ROOT));
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file_path = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            if !file_path.exists() {
                broken.push(format!("{}: {target} (no such file)", path.display()));
                continue;
            }
            if !anchor.is_empty() {
                let target_text = std::fs::read_to_string(&file_path).unwrap_or_default();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!("{}: {target} (no such heading)", path.display()));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_front_page_is_short_and_the_book_lists_every_page() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = readme.lines().count();
    assert!(lines < 200, "the README's front page has {lines} lines");
    assert!(readme.contains("cargo run --release -- demo") && readme.contains("cargo test"));
    let summary = std::fs::read_to_string(Path::new(ROOT).join("docs/src/SUMMARY.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    for (path, _) in pages().iter().skip(1) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "SUMMARY.md" {
            continue;
        }
        assert!(
            summary.contains(&format!("]({name})")),
            "SUMMARY.md lacks {name}"
        );
        assert!(
            readme.contains(&format!("docs/src/{name}")) || name == "introduction.md",
            "the README's table of pages lacks {name}"
        );
    }
}

/// What a config block's files hold, for validation: the packaged templates for a
/// template path, a signing secret for anything else.
fn read_file(path: &Path) -> std::io::Result<String> {
    let name = path.to_string_lossy();
    if let Some(t) = name.strip_prefix("/usr/share/deployhook/templates/") {
        return std::fs::read_to_string(Path::new(ROOT).join("packaging/templates").join(t));
    }
    if name.ends_with(".headers") {
        return Ok("api-key=0123456789abcdef".to_string());
    }
    Ok("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string())
}

#[test]
fn every_config_block_is_a_valid_config_as_printed() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (path, text) in pages() {
        for (_, info, block, line) in blocks(&text) {
            if info != "toml" {
                continue;
            }
            checked += 1;
            // A [[hook]] (or [api]) on its own is shown as it goes into a config with a
            // site: it is checked in one.
            let whole = if block.contains("[[site]]") || block.contains("[[source]]") {
                block.clone()
            } else {
                format!("[[site]]\nname = \"shop\"\npath = \"/var/www/shop\"\n\n{block}")
            };
            let env = deployhook::config::Env {
                host_name: "build-01".to_string(),
                state_directory: None,
                credentials_directory: None,
                credentials_unchecked: true,
                read_file: &read_file,
                read_env: &|_| None,
                mode_of: &|_| Some(0o600),
            };
            if let Err(errors) = deployhook::config::parse(
                &whole,
                Path::new("/etc/deployhook/deployhook.toml"),
                &env,
            ) {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                failures.push(format!(
                    "{}:{line}:\n{block}\n=> {}",
                    path.display(),
                    errors.join("\n   ")
                ));
            }
        }
    }
    assert!(checked >= 15, "only {checked} config blocks");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_shell_block_says_which_test_runs_it() {
    let mut unmarked = Vec::new();
    for (path, text) in pages() {
        for (marker, info, _, line) in blocks(&text) {
            if info != "sh" {
                continue;
            }
            let Some(marker) = marker else {
                unmarked.push(format!("{}:{line}", path.display()));
                continue;
            };
            // A block that cannot run in `cargo test` says why, and what covers it.
            if let Some(why) = marker.split_once("Shown, not run here:").map(|(_, w)| w) {
                assert!(
                    why.trim_end_matches("-->").trim().len() > 30,
                    "{}:{line}: say why the block is not run: {marker}",
                    path.display()
                );
                continue;
            }
            let runner = marker
                .split_whitespace()
                .find(|w| w.starts_with("tests/it/") || w.starts_with("packaging/"))
                .map(|w| w.trim_end_matches(['.', ',', ')', ';']))
                .unwrap_or_else(|| panic!("{}:{line}: {marker} names no test", path.display()));
            let file = Path::new(ROOT).join(runner);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let runner_text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}:{line}: {runner}: {e}", path.display()));
            assert!(
                runner_text.contains(&name),
                "{runner} does not read {name}, which says it runs its block at line {line}"
            );
        }
    }
    assert!(
        unmarked.is_empty(),
        "shell blocks without a <!-- … tests/it/….rs … --> marker: {unmarked:?}"
    );
}

/// `docs/src/<page>`'s shell block after `marker` (a comment naming this file).
pub fn block_after(page: &str, marker: &str) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/src").join(page))
        .unwrap_or_else(|e| panic!("{e}"));
    let after = text
        .split_once(marker)
        .unwrap_or_else(|| panic!("{page} lost its marker {marker:?}"))
        .1;
    after
        .split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("\n```"))
        .map(|(b, _)| b.to_string())
        .unwrap_or_else(|| panic!("{page}: no shell block after {marker:?}"))
}

#[test]
#[cfg_attr(
    not(tool_netns),
    ignore = "network namespaces are needed: apt-get install iproute2, with user namespaces allowed"
)]
fn try_it_by_hand_goes_from_nothing_to_a_webhook() {
    if !netns::available() {
        return;
    }
    let block = block_after(
        "install.md",
        "<!-- The block below is run as printed by tests/it/docs.rs. -->",
    );
    let env = TestEnv::new();
    let out_file = env.join("out.txt");
    let bin_dir = Path::new(crate::support::daemon::BIN)
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    // The block as printed, its output in a file; then wait (a deadline) for the webhook
    // it promises, and stop what it started.
    let script = format!(
        "ip link set lo up\nexec >\"{out}\" 2>&1\n{block}\n\
         for _ in $(seq 300); do grep -q '\"event\": \"PostDeployment\"' \"{out}\" && break; sleep 0.1; done\n\
         kill %1 %2\nwait\n",
        out = out_file.display()
    );
    let run = std::process::Command::new("unshare")
        .args(["-rn", "bash", "-c", &script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("USER", "jane")
        .env("HOME", env.join("home"))
        .env("TMPDIR", env.path())
        .current_dir(env.path())
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    let out = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert!(run.success() || out.contains("PostDeployment"), "{out}");
    for want in [
        "layout: releases",
        "\"event\": \"PostDeployment\"",
        "\"status\": \"success\"",
        "\"author\": \"Jane Doe\"",
        "\"message\": \"First page\"",
        "signature",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
