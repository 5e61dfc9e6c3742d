//! Primary settings, as Node's `cluster.setupPrimary(settings)`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::sched::Policy;

/// How the primary starts workers and shares ports, built with
/// [`Settings::builder`].
///
/// Every field is optional: a `setup` call merges the fields it sets into
/// the settings already in force, as Node's `setupPrimary` does. Settings
/// built here say what was set (`exec`, `args`, `cwd` and `policy` are
/// `None` when not); those [`Primary::settings`](crate::Primary::settings)
/// returns, and [`Event::Setup`](crate::Event::Setup) carries, have the
/// defaults filled in, as the next fork will use them.
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
    pub(crate) max_frame: Option<usize>,
    pub(crate) frame_timeout: Option<Duration>,
    pub(crate) max_listens: Option<usize>,
    pub(crate) message_queue: Option<usize>,
    pub(crate) message_queue_bytes: Option<usize>,
    pub(crate) exit_timeout: Option<Duration>,
}

/// Defaults of the limits a worker is held to (docs/security.md, "Limits
/// herd enforces").
pub mod limits {
    use std::time::Duration;

    /// [`Settings::max_frame`]'s default: 17 MiB, room for a 16 MiB
    /// payload and its JSON.
    ///
    /// [`Settings::max_frame`]: super::Settings::max_frame
    pub const MAX_FRAME: usize = crate::channel::wire::DEFAULT_MAX_BODY;
    /// [`Settings::frame_timeout`]'s default: 10 s.
    ///
    /// [`Settings::frame_timeout`]: super::Settings::frame_timeout
    pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
    /// [`Settings::max_listens`]'s default: 1024 listens per worker.
    ///
    /// [`Settings::max_listens`]: super::Settings::max_listens
    pub const MAX_LISTENS: usize = 1024;
    /// [`Settings::message_queue`]'s default: 1024 messages per worker.
    ///
    /// [`Settings::message_queue`]: super::Settings::message_queue
    pub const MESSAGE_QUEUE: usize = 1024;
    /// [`Settings::message_queue_bytes`]'s default: 8 MiB per worker.
    ///
    /// [`Settings::message_queue_bytes`]: super::Settings::message_queue_bytes
    pub const MESSAGE_QUEUE_BYTES: usize = 8 << 20;
    /// [`Settings::exit_timeout`]'s default: 30 s.
    ///
    /// [`Settings::exit_timeout`]: super::Settings::exit_timeout
    pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
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
    /// round-robin. Fixed once the first worker is forked: a later `setup`
    /// asking for another fails with
    /// [`Error::PolicyFixed`](crate::Error::PolicyFixed).
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

    /// The largest frame body a worker may send, in bytes (and the primary
    /// send it): 17 MiB by default ([`limits::MAX_FRAME`]), kept within
    /// 64 KiB to 64 MiB. A worker announcing more is dropped at the frame's
    /// header, with an [`Event::Error`](crate::Event::Error), before any of
    /// it is read; a `send` of a larger message fails with
    /// [`Error::TooLarge`](crate::Error::TooLarge) on either side.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        let (min, max) = (
            crate::channel::wire::MIN_BODY,
            crate::channel::wire::MAX_BODY,
        );
        self.s.max_frame = Some(bytes.clamp(min, max));
        self
    }

    /// How long a frame from a worker may take to arrive once its first
    /// byte has: 10 s by default ([`limits::FRAME_TIMEOUT`]). A worker
    /// whose frame stops half-way is dropped with an
    /// [`Event::Error`](crate::Event::Error). A worker quiet between frames
    /// is never timed out by this.
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.s.frame_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// How many listens (distinct address and index) one worker may hold:
    /// 1024 by default ([`limits::MAX_LISTENS`]). Each costs the primary a
    /// socket and a connection queue; a listen beyond the limit fails in
    /// the worker with EMFILE and a message naming the limit and this
    /// setting.
    pub fn max_listens(mut self, listens: usize) -> Self {
        self.s.max_listens = Some(listens);
        self
    }

    /// How many of a worker's messages may wait in the primary, emitted as
    /// [`Event::Message`](crate::Event::Message) (or as
    /// [`Event::Request`](crate::Event::Request)) and not yet taken by every
    /// subscription that receives them: 1024 by default
    /// ([`limits::MESSAGE_QUEUE`]). Past it, the primary stops reading that
    /// worker's channel, and the worker's `send` waits, until the messages
    /// are consumed: nothing is dropped, and other workers are not held up.
    /// See also [`message_queue_bytes`](Self::message_queue_bytes).
    pub fn message_queue(mut self, messages: usize) -> Self {
        self.s.message_queue = Some(messages.max(1));
        self
    }

    /// The bytes of a worker's messages that may wait in the primary, as
    /// [`message_queue`](Self::message_queue) counts messages: 8 MiB by
    /// default ([`limits::MESSAGE_QUEUE_BYTES`]). One message is always let
    /// through when none waits, however large.
    pub fn message_queue_bytes(mut self, bytes: usize) -> Self {
        self.s.message_queue_bytes = Some(bytes);
        self
    }

    /// How long a worker's program may take to return from `main` once its
    /// graceful disconnect is done (its listeners closed, its connections
    /// and holds ended, its channel flushed): 30 s by default
    /// ([`limits::EXIT_TIMEOUT`]). As in Node, a disconnected worker leaves
    /// when its program ends, with the program's own exit code; this is
    /// the backstop for one that never does: the library then exits the
    /// process with code [`EXIT_TIMEOUT`](crate::EXIT_TIMEOUT) (124) and a
    /// warning naming this setting.
    pub fn exit_timeout(mut self, timeout: Duration) -> Self {
        self.s.exit_timeout = Some(timeout);
        self
    }
}

impl Settings {
    /// A builder of settings, every field at its default.
    pub fn builder() -> SettingsBuilder {
        SettingsBuilder::default()
    }

    /// The exit timeout in force (see
    /// [`SettingsBuilder::exit_timeout`]).
    pub fn exit_timeout(&self) -> Duration {
        self.exit_timeout.unwrap_or(limits::EXIT_TIMEOUT)
    }

    /// The frame limit in force.
    pub fn max_frame(&self) -> usize {
        self.max_frame.unwrap_or(limits::MAX_FRAME)
    }

    /// The frame timeout in force.
    pub fn frame_timeout(&self) -> Duration {
        self.frame_timeout.unwrap_or(limits::FRAME_TIMEOUT)
    }

    /// The listen limit per worker in force.
    pub fn max_listens(&self) -> usize {
        self.max_listens.unwrap_or(limits::MAX_LISTENS)
    }

    /// The message queue bound per worker in force: messages and bytes.
    pub fn message_queue(&self) -> (usize, usize) {
        (
            self.message_queue.unwrap_or(limits::MESSAGE_QUEUE),
            self.message_queue_bytes
                .unwrap_or(limits::MESSAGE_QUEUE_BYTES),
        )
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

    /// The worker program: the one set; in the primary's settings, else
    /// the primary's own executable (`None` only when that cannot be
    /// found: a fork then fails with
    /// [`Error::NoExecutable`](crate::Error::NoExecutable)). A foreign
    /// spec runs its own program instead.
    pub fn exec(&self) -> Option<&std::path::Path> {
        self.exec.as_deref()
    }

    /// The worker's arguments (without the program's name): the ones set;
    /// in the primary's settings, else the primary's own.
    pub fn args(&self) -> Option<&[OsString]> {
        self.args.as_deref()
    }

    /// The worker's working directory: the one set; in the primary's
    /// settings, else the primary's (now: a fork starts in the primary's
    /// directory of the moment).
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

    /// The scheduling policy: the one set; in the primary's settings, the
    /// one in force (see [`Primary::policy`](crate::Primary::policy)).
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
        take!(
            exec,
            args,
            cwd,
            silent,
            uid,
            gid,
            policy,
            readiness,
            heartbeat,
            foreign,
            max_frame,
            frame_timeout,
            max_listens,
            message_queue,
            message_queue_bytes,
            exit_timeout
        );
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

    #[test]
    fn limits_have_their_defaults_bounds_and_merge() {
        let s = Settings::default();
        assert_eq!(s.max_frame(), 17 << 20);
        assert_eq!(s.frame_timeout(), std::time::Duration::from_secs(10));
        assert_eq!(s.max_listens(), 1024);
        assert_eq!(s.message_queue(), (1024, 8 << 20));
        assert_eq!(
            Settings::builder().max_frame(1).build().max_frame(),
            64 << 10
        );
        assert_eq!(
            Settings::builder().max_frame(1 << 40).build().max_frame(),
            64 << 20
        );
        let mut s = Settings::builder().max_listens(5).message_queue(0).build();
        s.merge(
            Settings::builder()
                .frame_timeout(Duration::from_secs(1))
                .build(),
        );
        assert_eq!(s.max_listens(), 5);
        assert_eq!(s.message_queue().0, 1, "at least one message");
        assert_eq!(s.frame_timeout(), Duration::from_secs(1));
    }
}
