//! Primary settings, as Node's `cluster.setupPrimary(settings)`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::sched::Policy;

/// How the primary starts workers and shares ports, built with
/// [`Settings::builder`].
///
/// Every field is optional: a `setup` call merges the fields it sets into
/// the settings already in force, as Node's `setupPrimary` does.
///
/// ```
/// let s = herd::Settings::builder().exec("/usr/bin/env").args(["true"]).silent(true).build();
/// assert_eq!(s.exec().unwrap(), std::path::Path::new("/usr/bin/env"));
/// assert!(s.silent());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub(crate) exec: Option<PathBuf>,
    pub(crate) args: Option<Vec<OsString>>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) silent: Option<bool>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) policy: Option<Policy>,
    pub(crate) readiness: Option<Readiness>,
    pub(crate) heartbeat: Option<std::time::Duration>,
    pub(crate) foreign: Option<std::sync::Arc<crate::foreign::Foreign>>,
}

/// When a worker counts as ready (past its warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Readiness {
    /// As soon as it listens (default).
    #[default]
    Listening,
    /// When it calls [`Worker::ready`](crate::Worker::ready), as cluster2's
    /// warm-up.
    Explicit,
}

/// Builds [`Settings`]: each method sets one field; what is not set keeps
/// its default (or, in a `setup`, the value in force).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SettingsBuilder {
    s: Settings,
}

impl From<SettingsBuilder> for Settings {
    fn from(b: SettingsBuilder) -> Settings {
        b.s
    }
}

impl SettingsBuilder {
    /// The settings built.
    pub fn build(self) -> Settings {
        self.s
    }

    /// The worker program. Default: the current executable.
    pub fn exec(mut self, path: impl Into<PathBuf>) -> Self {
        self.s.exec = Some(path.into());
        self
    }

    /// The worker's arguments. Default: the primary's own arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.s.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// The worker's working directory. Default: the primary's.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.s.cwd = Some(dir.into());
        self
    }

    /// Pipe the worker's stdout and stderr to the primary (see
    /// [`WorkerHandle::take_stdout`](crate::WorkerHandle::take_stdout))
    /// instead of sharing the primary's. Default: false.
    pub fn silent(mut self, silent: bool) -> Self {
        self.s.silent = Some(silent);
        self
    }

    /// Run workers as this user id.
    pub fn uid(mut self, uid: u32) -> Self {
        self.s.uid = Some(uid);
        self
    }

    /// Run workers as this group id.
    pub fn gid(mut self, gid: u32) -> Self {
        self.s.gid = Some(gid);
        self
    }

    /// An environment variable for every worker (`fork_with_env` adds more).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.s.env.push((key.into(), value.into()));
        self
    }

    /// How workers share ports. Default: `HERD_SCHED_POLICY` if set, else
    /// round-robin. Fixed once the first worker is forked.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.s.policy = Some(policy);
        self
    }

    /// When workers count as ready. Default: [`Readiness::Listening`].
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.s.readiness = Some(readiness);
        self
    }

    /// How often workers report a heartbeat. Default: 1 s.
    pub fn heartbeat(mut self, every: std::time::Duration) -> Self {
        self.s.heartbeat = Some(every);
        self
    }

    /// Run a foreign program as the workers, instead of `exec` speaking
    /// herd's channel (see [`crate::foreign`]). Needs the `shared` or
    /// `reuseport` policy.
    pub fn foreign(mut self, spec: crate::foreign::Foreign) -> Self {
        self.s.foreign = Some(std::sync::Arc::new(spec));
        self
    }
}

impl Settings {
    /// A builder of settings, every field at its default.
    pub fn builder() -> SettingsBuilder {
        SettingsBuilder::default()
    }

    /// The foreign worker spec, if set.
    pub fn foreign(&self) -> Option<&crate::foreign::Foreign> {
        self.foreign.as_deref()
    }

    /// The heartbeat interval in force.
    pub fn heartbeat(&self) -> std::time::Duration {
        self.heartbeat.unwrap_or(std::time::Duration::from_secs(1))
    }

    /// The readiness rule in force.
    pub fn readiness(&self) -> Readiness {
        self.readiness.unwrap_or_default()
    }

    /// The worker program, if set.
    pub fn exec(&self) -> Option<&std::path::Path> {
        self.exec.as_deref()
    }

    /// The worker arguments, if set.
    pub fn args(&self) -> Option<&[OsString]> {
        self.args.as_deref()
    }

    /// The working directory, if set.
    pub fn cwd(&self) -> Option<&std::path::Path> {
        self.cwd.as_deref()
    }

    /// Whether worker output is piped to the primary.
    pub fn silent(&self) -> bool {
        self.silent.unwrap_or(false)
    }

    /// The user id workers run as, if set.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// The group id workers run as, if set.
    pub fn gid(&self) -> Option<u32> {
        self.gid
    }

    /// The environment variables every worker gets, in the order set.
    pub fn env(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    /// The scheduling policy, if set.
    pub fn policy(&self) -> Option<Policy> {
        self.policy
    }

    /// Applies what every worker's process gets from the settings, herd-aware
    /// or foreign: working directory, user, group, and where its stdio goes.
    pub(crate) fn apply_to(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some(uid) = self.uid {
            cmd.uid(uid);
        }
        if let Some(gid) = self.gid {
            cmd.gid(gid);
        }
        if self.silent() {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        cmd.stdin(Stdio::null());
    }

    /// Merges `later` into `self`: fields `later` sets win; env accumulates.
    pub(crate) fn merge(&mut self, later: Settings) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(exec, args, cwd, silent, uid, gid, policy, readiness, heartbeat, foreign);
        self.env.extend(later.env);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_settings_merge_into_earlier() {
        let mut s = Settings::builder()
            .exec("/a")
            .silent(true)
            .env("A", "1")
            .build();
        s.merge(Settings::builder().exec("/b").env("B", "2").build());
        assert_eq!(s.exec().unwrap(), std::path::Path::new("/b"));
        assert!(s.silent());
        assert_eq!(s.env.len(), 2);
    }
}
