//! `/deps`: what the running program is built from, the Rust equivalent of
//! cluster2's `npm ls`: its name and version, git commit and compiler
//! where the build said them, herd's enabled features, and the resolved
//! dependencies from its `Cargo.lock`.

use serde::Serialize;

/// What a program is built from (see [`deps!`](crate::deps)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Deps {
    /// The program's package name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The git commit it was built from, if the build said
    /// (`HERD_GIT_COMMIT` at build time).
    pub git_commit: Option<String>,
    /// The compiler, if the build said (`HERD_RUSTC` at build time).
    pub rustc: Option<String>,
    /// herd's version and enabled features.
    pub herd: Dep,
    /// herd's features compiled in.
    pub features: Vec<String>,
    /// Every package of its `Cargo.lock`, by name.
    pub dependencies: Vec<Dep>,
    /// The command line of the program run as the workers (`herd run`).
    pub command: Option<Vec<String>>,
}

/// One package and its version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Dep {
    /// The package name.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// The [`Deps`] of the crate that calls it: its name and version,
/// `HERD_GIT_COMMIT` and `HERD_RUSTC` if its build script set them
/// (`println!("cargo:rustc-env=HERD_GIT_COMMIT={commit}")`), and with
/// `lock = "PATH"` (relative to its `Cargo.toml`'s directory) the
/// resolved dependencies of that `Cargo.lock`.
///
/// ```
/// let deps = herd::deps!();
/// assert_eq!(deps.name, "herd");
/// let deps = herd::deps!(lock = "../../Cargo.lock");
/// assert!(deps.dependencies.iter().any(|d| d.name == "tokio"));
/// ```
#[macro_export]
macro_rules! deps {
    () => {
        $crate::Deps::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            option_env!("HERD_GIT_COMMIT"),
            option_env!("HERD_RUSTC"),
            "",
        )
    };
    (lock = $path:literal) => {
        $crate::Deps::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            option_env!("HERD_GIT_COMMIT"),
            option_env!("HERD_RUSTC"),
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)),
        )
    };
}

impl Deps {
    /// The deps of a program: what [`deps!`](crate::deps) fills in. `lock`
    /// is the text of a `Cargo.lock` (empty: none).
    pub fn new(
        name: &str,
        version: &str,
        git_commit: Option<&str>,
        rustc: Option<&str>,
        lock: &str,
    ) -> Deps {
        let mut dependencies = parse_lock(lock);
        dependencies.retain(|d| d.name != name);
        Deps {
            name: name.into(),
            version: version.into(),
            git_commit: git_commit.map(str::to_string),
            rustc: rustc.map(str::to_string),
            herd: Dep {
                name: "herd".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            features: features(),
            dependencies,
            command: None,
        }
    }

    /// herd itself, when the program says nothing.
    pub(crate) fn of_herd() -> Deps {
        Deps::new(
            "herd",
            env!("CARGO_PKG_VERSION"),
            None,
            option_env!("HERD_RUSTC"),
            "",
        )
    }

    /// Adds the command line of the program run as the workers.
    pub fn command(mut self, command: Vec<String>) -> Deps {
        self.command = Some(command);
        self
    }
}

fn features() -> Vec<String> {
    let mut f = Vec::new();
    if cfg!(feature = "axum") {
        f.push("axum".to_string());
    }
    if cfg!(feature = "monitor") {
        f.push("monitor".to_string());
    }
    f
}

/// The `name` and `version` of every `[[package]]` of a `Cargo.lock`.
fn parse_lock(lock: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    let value = |line: &str, key: &str| -> Option<String> {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    };
    for line in lock.lines().map(str::trim) {
        if line == "[[package]]" {
            name = None;
        } else if let Some(n) = value(line, "name") {
            name = Some(n);
        } else if let (Some(v), Some(n)) = (value(line, "version"), name.take()) {
            out.push(Dep {
                name: n,
                version: v,
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_gives_every_package_once() {
        let lock = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"x\"\n\n[[package]]\nname = \"b\"\nversion = \"0.2.1\"\ndependencies = [\n \"a\",\n]\n";
        assert_eq!(
            parse_lock(lock),
            vec![
                Dep {
                    name: "a".into(),
                    version: "1.0.0".into()
                },
                Dep {
                    name: "b".into(),
                    version: "0.2.1".into()
                }
            ]
        );
    }
}
