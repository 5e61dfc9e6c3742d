//! The `ipc` benchmark: herd's channel against a bare Unix-socket ping-pong
//! (and, through `bench/node/ipc.js`, against Node's `process.send`).
//!
//! One executable plays three parts:
//! - the primary (started by hand or by `bench/scenarios/ipc.sh`): measures,
//!   prints `KEY VALUE` lines;
//! - a herd worker (started by the primary through herd);
//! - a bare echo child (`HERD_IPC_BARE=1`, its socket on fd 0), which speaks
//!   the same framing as herd (8-byte header, the same JSON bytes) with no
//!   serde, no outbox and no event bus: the floor herd is measured against.
//!
//! Both peers live through the whole run, and the round trips alternate
//! between them in blocks, so that a burst of load from elsewhere on the
//! machine hits both sides of the herd/bare ratio alike.
//!
//! ```text
//! ipc [--n N] [--m M] [--warmup W] [--blocks B] [--only herd|bare]
//! ```
//! Output (one per line; times in microseconds):
//! `herd.tput MSGS_PER_S`, `herd.rtt.mean US`, `herd.rtt.p50 US`,
//! `herd.rtt.p99 US`, and the same for `bare.`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use herd::{Event, Events, Primary, Role, Worker, WorkerHandle};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The message of every measurement: small, and decoded on arrival as a
/// real user would. `kind` is "tick" (flood), "ping" (round trip) or
/// "flood" (the command to start a flood of `seq` ticks).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    seq: u64,
    kind: String,
    value: f64,
}

impl Tick {
    fn new(seq: u64, kind: &str) -> Tick {
        Tick {
            seq,
            kind: kind.to_string(),
            value: seq as f64 * 0.5,
        }
    }
}

const BARE_ENV: &str = "HERD_IPC_BARE";
const HEADER_LEN: usize = 8;

struct Opts {
    n: u64,
    m: usize,
    warmup: usize,
    blocks: usize,
    herd: bool,
    bare: bool,
}

fn parse_opts() -> Opts {
    let mut opts = Opts {
        n: 400_000,
        m: 20_000,
        warmup: 2_000,
        blocks: 20,
        herd: true,
        bare: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{a} needs a number")))
        };
        match a.as_str() {
            "--n" => opts.n = value(),
            "--m" => opts.m = value() as usize,
            "--warmup" => opts.warmup = value() as usize,
            "--blocks" => opts.blocks = value() as usize,
            "--only" => match args.next().as_deref() {
                Some("herd") => opts.bare = false,
                Some("bare") => opts.herd = false,
                _ => usage("--only takes herd or bare"),
            },
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if opts.n < 2 || opts.m == 0 || opts.blocks == 0 {
        usage("--n must be at least 2, --m and --blocks at least 1");
    }
    opts
}

fn usage(why: &str) -> ! {
    eprintln!(
        "ipc: {why}\nusage: ipc [--n MESSAGES] [--m ROUND_TRIPS] [--warmup ROUND_TRIPS] \
         [--blocks B] [--only herd|bare]"
    );
    std::process::exit(2)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    if std::env::var_os(BARE_ENV).is_some() {
        return bare_child().await;
    }
    match herd::role() {
        Role::Worker => herd_worker().await,
        Role::Primary => run(parse_opts()).await,
    }
}

async fn run(opts: Opts) -> Result<(), BoxError> {
    let mut herd = if opts.herd {
        Some(HerdSide::start().await?)
    } else {
        None
    };
    let mut bare = if opts.bare {
        Some(BareSide::start().await?)
    } else {
        None
    };

    // (a) Pipelined worker -> primary, timed from the first arrival to the last.
    if let Some(h) = &mut herd {
        println!("herd.tput {:.0}", h.flood(opts.n).await?);
    }
    if let Some(b) = &mut bare {
        println!("bare.tput {:.0}", b.flood(opts.n).await?);
    }

    // (b) and (c): sequential round trips, herd's and bare's in alternating
    // blocks.
    let (mut herd_rtt, mut bare_rtt) = (Vec::new(), Vec::new());
    let per_block = opts.m.div_ceil(opts.blocks);
    let mut seq = 0u64;
    for block in 0..=opts.blocks {
        // Block 0 is the warm-up, not timed.
        let (count, keep) = if block == 0 {
            (opts.warmup, false)
        } else {
            (per_block.min(opts.m - (block - 1) * per_block), true)
        };
        for _ in 0..count {
            seq += 1;
            if let Some(h) = &mut herd {
                let rtt = h.round_trip(seq).await?;
                if keep {
                    herd_rtt.push(rtt);
                }
            }
        }
        for _ in 0..count {
            seq += 1;
            if let Some(b) = &mut bare {
                let rtt = b.round_trip(seq).await?;
                if keep {
                    bare_rtt.push(rtt);
                }
            }
        }
    }
    if let Some(h) = herd {
        Stats::of(&mut herd_rtt).print("herd");
        h.stop().await;
    }
    if let Some(b) = bare {
        Stats::of(&mut bare_rtt).print("bare");
        b.stop().await?;
    }
    Ok(())
}

struct Stats {
    mean: f64,
    p50: f64,
    p99: f64,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Stats {
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: f64| us(samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]);
        Stats {
            mean: samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64,
            p50: at(0.50),
            p99: at(0.99),
        }
    }

    fn print(&self, who: &str) {
        println!("{who}.rtt.mean {:.2}", self.mean);
        println!("{who}.rtt.p50 {:.2}", self.p50);
        println!("{who}.rtt.p99 {:.2}", self.p99);
    }
}

// ---------------------------------------------------------------- herd ----

/// The worker: echoes pings; on "flood", sends `seq` ticks as fast as `send`
/// allows.
async fn herd_worker() -> Result<(), BoxError> {
    let worker = Worker::connect().await?;
    while let Some(msg) = worker.recv().await {
        let tick: Tick = msg.decode()?;
        match tick.kind.as_str() {
            "ping" => worker.send(&tick).await?,
            "flood" => {
                for seq in 0..tick.seq {
                    worker.send(&Tick::new(seq, "tick")).await?;
                }
            }
            other => return Err(format!("unknown command {other:?}").into()),
        }
    }
    Ok(())
}

struct HerdSide {
    primary: Primary,
    events: Events,
    worker: WorkerHandle,
}

impl HerdSide {
    async fn start() -> Result<HerdSide, BoxError> {
        let primary = Primary::new()?;
        let mut events = primary.events();
        let worker = primary.fork()?;
        loop {
            match events.next().await.ok_or("event stream ended")? {
                Event::Online { .. } => break,
                Event::Exit { status, .. } => return Err(format!("worker exited: {status}").into()),
                _ => {}
            }
        }
        Ok(HerdSide {
            primary,
            events,
            worker,
        })
    }

    /// The next user message from the worker, decoded.
    async fn next_tick(&mut self) -> Result<Tick, BoxError> {
        loop {
            match self.events.next().await.ok_or("event stream ended")? {
                Event::Message { message, .. } => return Ok(message.decode()?),
                Event::Exit { status, .. } => return Err(format!("worker exited: {status}").into()),
                Event::Error { error, .. } => return Err(format!("worker error: {error}").into()),
                _ => {}
            }
        }
    }

    /// Messages per second of a flood of `n`, first arrival to last.
    async fn flood(&mut self, n: u64) -> Result<f64, BoxError> {
        self.worker.send(&Tick::new(n, "flood")).await?;
        let first = self.next_tick().await?;
        assert_eq!(first.seq, 0);
        let start = Instant::now();
        for expect in 1..n {
            let t = self.next_tick().await?;
            assert_eq!(t.seq, expect, "messages out of order");
        }
        Ok((n - 1) as f64 / start.elapsed().as_secs_f64())
    }

    async fn round_trip(&mut self, seq: u64) -> Result<Duration, BoxError> {
        let t0 = Instant::now();
        self.worker.send(&Tick::new(seq, "ping")).await?;
        let back = self.next_tick().await?;
        let rtt = t0.elapsed();
        assert_eq!(back.seq, seq, "echo out of order");
        Ok(rtt)
    }

    async fn stop(self) {
        self.worker.disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.primary.disconnect()).await;
    }
}

// ---------------------------------------------------------------- bare ----
//
// Two processes, tokio (the same runtime as herd's side), a socketpair, and
// herd's framing: an 8-byte header (u32 LE body length, then kind 1 and
// zeros) and the JSON body herd would send. The parent writes a frame and
// reads the echo; the child echoes frames as they complete. No serde.

fn frame(tick: &Tick) -> Vec<u8> {
    let body = serde_json::to_vec(tick).expect("a Tick serializes");
    let mut f = Vec::with_capacity(HEADER_LEN + body.len());
    f.extend_from_slice(&(body.len() as u32).to_le_bytes());
    f.extend_from_slice(&[1, 0, 0, 0]);
    f.extend_from_slice(&body);
    f
}

/// Reads frames from a stream into one buffer; one `read` usually brings a
/// whole frame (or many).
struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    fn new() -> FrameReader {
        FrameReader {
            buf: vec![0; 256 << 10],
            start: 0,
            end: 0,
        }
    }

    /// The byte range of the next complete frame, if one is buffered.
    fn next_frame(&mut self) -> Option<(usize, usize)> {
        let avail = self.end - self.start;
        if avail < HEADER_LEN {
            return None;
        }
        let b = &self.buf[self.start..self.start + 4];
        let total = HEADER_LEN + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if avail < total {
            return None;
        }
        let range = (self.start, self.start + total);
        self.start += total;
        Some(range)
    }

    /// Reads more; false at end of file.
    async fn fill(&mut self, s: &mut UnixStream) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < 4096 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = s.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }
}

/// The bare child: on a u64 `n`, writes `n` frames (1024 to a write); then
/// echoes every frame until the parent closes the socket.
async fn bare_child() -> Result<(), BoxError> {
    // The parent passed our end of the socketpair as standard input.
    let fd: OwnedFd = io::stdin().as_fd().try_clone_to_owned()?;
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)?;
    let mut s = UnixStream::from_std(std)?;
    let mut r = FrameReader::new();
    loop {
        // A flood request is a u64 whose byte 4 is 0; a frame's is 1 (kind).
        if r.end - r.start >= HEADER_LEN && r.buf[r.start + 4] != 1 {
            let n = u64::from_le_bytes(r.buf[r.start..r.start + HEADER_LEN].try_into()?);
            r.start += HEADER_LEN;
            let one = frame(&Tick::new(n / 2, "tick"));
            let batch: Vec<u8> = one.repeat(1024);
            let mut left = n;
            while left > 0 {
                let k = left.min(1024);
                s.write_all(&batch[..k as usize * one.len()]).await?;
                left -= k;
            }
        } else if let Some((a, b)) = r.next_frame() {
            s.write_all(&r.buf[a..b]).await?;
        } else if !r.fill(&mut s).await? {
            return Ok(());
        }
    }
}

struct BareSide {
    child: tokio::process::Child,
    stream: UnixStream,
    reader: FrameReader,
}

impl BareSide {
    async fn start() -> Result<BareSide, BoxError> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .env(BARE_ENV, "1")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .kill_on_drop(true)
            .spawn()?;
        ours.set_nonblocking(true)?;
        Ok(BareSide {
            child,
            stream: UnixStream::from_std(ours)?,
            reader: FrameReader::new(),
        })
    }

    /// Frames per second of a flood of `n` prebuilt frames, first arrival
    /// to last (counted, not decoded: the wire's ceiling).
    async fn flood(&mut self, n: u64) -> Result<f64, BoxError> {
        // A flood request: a u64 whose byte 4 is 0, never 1 (a frame's kind).
        assert!(n < 1 << 32);
        self.stream.write_u64_le(n).await?;
        let (mut count, mut start) = (0u64, None);
        while count < n {
            if !self.reader.fill(&mut self.stream).await? {
                return Err("bare child closed early".into());
            }
            while self.reader.next_frame().is_some() {
                if count == 0 {
                    start = Some(Instant::now());
                }
                count += 1;
            }
        }
        let start = start.expect("counted");
        Ok((n - 1) as f64 / start.elapsed().as_secs_f64())
    }

    async fn round_trip(&mut self, seq: u64) -> Result<Duration, BoxError> {
        let ping = frame(&Tick::new(seq, "ping"));
        let t0 = Instant::now();
        self.stream.write_all(&ping).await?;
        let (a, b) = loop {
            if let Some(range) = self.reader.next_frame() {
                break range;
            }
            if !self.reader.fill(&mut self.stream).await? {
                return Err("bare child closed early".into());
            }
        };
        let rtt = t0.elapsed();
        assert_eq!(&self.reader.buf[a..b], &ping[..], "echo differs");
        Ok(rtt)
    }

    async fn stop(mut self) -> Result<(), BoxError> {
        drop(self.stream);
        self.child.wait().await?;
        Ok(())
    }
}
