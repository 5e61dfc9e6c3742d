//! The README and docs/*.md: every relative link resolves to a file of the
//! repository (and every `#anchor` to a heading of its file), and the
//! README says how to install herd.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The targets of `[text](target)` and `[ref]: target` links.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            out.push(target.trim_matches(['<', '>']).to_string());
        }
    }
    for line in text.lines() {
        let l = line.trim_start();
        if let Some((label, target)) = l.strip_prefix('[').and_then(|l| l.split_once("]:")) {
            if !label.contains(']') {
                if let Some(t) = target.split_whitespace().next() {
                    out.push(t.to_string());
                }
            }
        }
    }
    out
}

/// GitHub's anchors for a Markdown file's headings.
fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim().to_lowercase();
        out.push(
            title
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect(),
        );
    }
    out
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for link in links(&text) {
            if link.is_empty() || link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            if !file.exists() {
                bad.push(format!("{}: {link} (no such file)", doc.display()));
                continue;
            }
            if let Some(a) = anchor {
                let target = std::fs::read_to_string(&file).unwrap_or_default();
                if file.extension().is_some_and(|e| e == "md")
                    && !anchors(&target).iter().any(|h| h == a)
                {
                    bad.push(format!("{}: {link} (no such heading)", doc.display()));
                }
            }
        }
    }
    assert!(
        checked > 10,
        "found only {checked} links: is the parser broken?"
    );
    assert!(
        bad.is_empty(),
        "links that do not resolve:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_link_checker_finds_a_broken_link() {
    let text = "see [a](docs/nope.md), [b](https://example.com) and\n[ref]: ./x.md\n";
    assert_eq!(
        links(text),
        ["docs/nope.md", "https://example.com", "./x.md"]
    );
    assert_eq!(
        anchors("# Limits herd enforces\n```\n# not a heading\n```\n## `herd run`: x\n"),
        ["limits-herd-enforces", "herd-run-x"]
    );
}

#[test]
fn the_readme_says_how_to_install_herd() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("cargo install --path crates/herd-cli"),
        "the README gives the install command"
    );
    assert!(
        readme.contains("~/.cargo/bin/herd"),
        "the README says where the binary lands"
    );
    assert!(root().join("crates/herd-cli/Cargo.toml").exists());
}
