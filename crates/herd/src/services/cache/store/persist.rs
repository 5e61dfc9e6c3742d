//! A persistent cache's file: JSON written to a temporary file, synced,
//! then renamed over the old one (and the directory synced), so a crash
//! leaves the old file or the new one, never half of one. A file that does
//! not read back whole is reported and set aside, never a reason not to
//! start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The format's version, in the file's `herd_cache` field.
const VERSION: u32 = 1;

#[derive(Serialize)]
struct FileOut<'a> {
    herd_cache: u32,
    name: &'a str,
    saved_unix_ms: u64,
    entries: Vec<EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    key: &'a str,
    value: &'a RawValue,
    ttl_ms: Option<u64>,
}

#[derive(Deserialize)]
struct FileIn {
    herd_cache: u32,
    saved_unix_ms: u64,
    entries: Vec<EntryIn>,
}

#[derive(Deserialize)]
struct EntryIn {
    key: String,
    value: Box<RawValue>,
    ttl_ms: Option<u64>,
}

/// An entry read back: its key, JSON, and what is left of its life.
pub(crate) struct Loaded {
    pub key: String,
    pub json: String,
    pub ttl_ms: Option<u64>,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.cache.json"))
}

/// The file's bytes for `entries` (key, JSON, ms left).
pub(crate) fn encode<'a>(
    name: &str,
    entries: impl Iterator<Item = (&'a str, &'a str, Option<u64>)>,
) -> Vec<u8> {
    let mut raws = Vec::new();
    for (key, json, ttl) in entries {
        // The store holds only JSON it checked.
        if let Ok(raw) = RawValue::from_string(json.to_string()) {
            raws.push((key, raw, ttl));
        }
    }
    let file = FileOut {
        herd_cache: VERSION,
        name,
        saved_unix_ms: unix_ms(),
        entries: raws
            .iter()
            .map(|(key, raw, ttl_ms)| EntryOut {
                key,
                value: raw,
                ttl_ms: *ttl_ms,
            })
            .collect(),
    };
    serde_json::to_vec(&file).unwrap_or_default()
}

/// Writes `bytes` to `path` crash-safely.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What reading a cache's file found.
pub(crate) enum Read {
    /// No file: a new cache.
    None,
    /// The entries still alive.
    Entries(Vec<Loaded>),
    /// The file is corrupt: it was renamed to the path given (or could not
    /// be, the error says why).
    Corrupt { why: String, moved_to: String },
}

pub(crate) fn read(path: &Path) -> Read {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::None,
        Err(e) => return set_aside(path, format!("cannot read it: {e}")),
    };
    let file: FileIn = match serde_json::from_slice(&bytes) {
        Ok(f) => f,
        Err(e) => return set_aside(path, format!("it is not a whole cache file: {e}")),
    };
    if file.herd_cache != VERSION {
        return set_aside(
            path,
            format!("format version {} is not {VERSION}", file.herd_cache),
        );
    }
    let age = unix_ms().saturating_sub(file.saved_unix_ms);
    let entries = file
        .entries
        .into_iter()
        .filter_map(|e| {
            let ttl_ms = match e.ttl_ms {
                Some(t) if t <= age => return None,
                Some(t) => Some(t - age),
                None => None,
            };
            Some(Loaded {
                key: e.key,
                json: e.value.get().to_string(),
                ttl_ms,
            })
        })
        .collect();
    Read::Entries(entries)
}

fn set_aside(path: &Path, why: String) -> Read {
    let aside = path.with_extension(format!("json.corrupt-{}", unix_ms()));
    let moved_to = match std::fs::rename(path, &aside) {
        Ok(()) => aside.display().to_string(),
        Err(e) => format!("(not moved: {e})"),
    };
    Read::Corrupt { why, moved_to }
}
