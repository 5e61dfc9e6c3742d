//! The store's unit tests, on a manual clock: time moves only when a test
//! moves it, so nothing here sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock::ManualClock;
use super::*;

fn store() -> (Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    (Store::new(None, clock.clone()), clock)
}

fn opened(options: CacheOptions) -> (Store, Arc<ManualClock>) {
    let (s, c) = store();
    s.open("c", &options).unwrap();
    (s, c)
}

fn json(s: &str) -> Json {
    s.into()
}

fn args(owner: Owner, load: bool) -> GetArgs {
    GetArgs {
        owner,
        load,
        wait: Duration::from_secs(5),
        track: false,
    }
}

fn w(id: u32) -> Owner {
    Owner::Worker(id)
}

fn hit(l: Lookup) -> String {
    match l {
        Lookup::Hit(v) => v.json.to_string(),
        other => panic!("expected a hit, got {other:?}"),
    }
}

fn waiting(l: Lookup) -> oneshot::Receiver<Waited> {
    match l {
        Lookup::Wait(rx) => rx,
        other => panic!("expected a wait, got {other:?}"),
    }
}

fn token(l: Lookup) -> u64 {
    match l {
        Lookup::Load(t) => t,
        other => panic!("expected the lease, got {other:?}"),
    }
}

#[test]
fn one_lease_per_key_and_the_fill_reaches_every_waiter() {
    let (s, _) = opened(CacheOptions::default());
    let t = token(s.get("c", "k", args(w(1), true)).unwrap());
    let mut rxs: Vec<_> = (2..=100)
        .map(|i| waiting(s.get("c", "k", args(w(i), true)).unwrap()))
        .collect();
    assert!(s.fill("c", "k", t, Ok(json("7"))).unwrap());
    for rx in &mut rxs {
        match rx.try_recv().unwrap() {
            Waited::Hit(v) => assert_eq!(&*v.json, "7"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(hit(s.get("c", "k", args(w(1), true)).unwrap()), "7");
    let st = &s.stats()[0].1;
    assert_eq!((st.loads, st.hits, st.misses), (1, 1, 100));
}

#[test]
fn a_failed_load_gives_its_error_to_every_waiter_at_once_and_frees_the_key() {
    let (s, _) = opened(CacheOptions::default());
    let t = token(s.get("c", "k", args(w(1), true)).unwrap());
    let mut rxs: Vec<_> = (0..10)
        .map(|_| waiting(s.get("c", "k", args(w(2), true)).unwrap()))
        .collect();
    assert!(s.fill("c", "k", t, Err("db down".into())).unwrap());
    for rx in &mut rxs {
        assert!(matches!(rx.try_recv().unwrap(), Waited::Failed(ref e) if e == "db down"));
    }
    // The next caller loads anew.
    let t2 = token(s.get("c", "k", args(w(3), true)).unwrap());
    assert_ne!(t, t2);
    assert_eq!(s.stats()[0].1.load_failures, 1);
}

#[test]
fn a_dead_loader_passes_its_lease_to_the_first_waiter_left() {
    let (s, _) = opened(CacheOptions::default());
    let t = token(s.get("c", "k", args(w(1), true)).unwrap());
    let mut gone_waiter = waiting(s.get("c", "k", args(w(1), true)).unwrap());
    let mut next = waiting(s.get("c", "k", args(w(2), true)).unwrap());
    let mut last = waiting(s.get("c", "k", args(w(3), true)).unwrap());
    s.owner_gone(w(1));
    // Worker 1's own waiter goes with it; worker 2 loads, 3 still waits.
    assert!(gone_waiter.try_recv().is_err());
    let t2 = match next.try_recv().unwrap() {
        Waited::Load(t2) => t2,
        other => panic!("{other:?}"),
    };
    assert!(last.try_recv().is_err(), "still waiting");
    // The dead loader's late fill is refused; the new one's is kept.
    assert!(!s.fill("c", "k", t, Ok(json("1"))).unwrap());
    assert!(s.fill("c", "k", t2, Ok(json("2"))).unwrap());
    assert!(matches!(last.try_recv().unwrap(), Waited::Hit(v) if &*v.json == "2"));
}

#[test]
fn a_lease_runs_out_passes_on_and_is_counted() {
    let (s, clock) = opened(CacheOptions::default().lease(Duration::from_millis(500)));
    token(s.get("c", "k", args(w(1), true)).unwrap());
    let mut next = waiting(s.get("c", "k", args(w(2), true)).unwrap());
    assert_eq!(s.next_deadline(), Some(500));
    clock.advance(499);
    s.tick();
    assert!(next.try_recv().is_err());
    clock.advance(1);
    s.tick();
    assert!(matches!(next.try_recv().unwrap(), Waited::Load(_)));
    assert_eq!(s.stats()[0].1.lease_timeouts, 1);
    // With no one waiting, a lease that runs out just ends.
    clock.advance(500);
    s.tick();
    token(s.get("c", "k", args(w(3), true)).unwrap());
}

#[test]
fn a_wait_ends_at_its_own_timeout_and_its_registration_goes() {
    let (s, clock) = opened(CacheOptions::default());
    let t = token(s.get("c", "k", args(w(1), true)).unwrap());
    let mut short = waiting(
        s.get(
            "c",
            "k",
            GetArgs {
                wait: Duration::from_millis(100),
                ..args(w(2), true)
            },
        )
        .unwrap(),
    );
    let mut long = waiting(s.get("c", "k", args(w(3), true)).unwrap());
    assert_eq!(s.next_deadline(), Some(100));
    clock.advance(100);
    s.tick();
    assert!(
        matches!(short.try_recv().unwrap(), Waited::TimedOut(d) if d == Duration::from_millis(100))
    );
    assert!(long.try_recv().is_err());
    // The timed-out waiter is no longer registered: it is not the one the
    // lease passes to when the loader dies.
    s.owner_gone(w(1));
    assert!(matches!(long.try_recv().unwrap(), Waited::Load(_)));
    let _ = t;
}

#[test]
fn a_set_during_a_load_ends_the_lease_with_its_value() {
    let (s, _) = opened(CacheOptions::default());
    let t = token(s.get("c", "k", args(w(1), true)).unwrap());
    let mut rx = waiting(s.get("c", "k", args(w(2), true)).unwrap());
    assert!(s.set("c", "k", json("\"set\""), false).unwrap());
    assert!(matches!(rx.try_recv().unwrap(), Waited::Hit(v) if &*v.json == "\"set\""));
    assert!(!s.fill("c", "k", t, Ok(json("\"loaded\""))).unwrap());
    assert_eq!(hit(s.get("c", "k", args(w(1), false)).unwrap()), "\"set\"");
}

#[test]
fn leave_if_not_null_writes_only_over_nothing_or_null() {
    let (s, _) = opened(CacheOptions::default());
    assert!(s.set("c", "k", json("null"), true).unwrap());
    assert!(s.set("c", "k", json("1"), true).unwrap());
    assert!(!s.set("c", "k", json("2"), true).unwrap());
    assert_eq!(hit(s.get("c", "k", args(w(1), false)).unwrap()), "1");
    assert!(s.set("c", "k", json("3"), false).unwrap());
    assert_eq!(hit(s.get("c", "k", args(w(1), false)).unwrap()), "3");
}

#[test]
fn del_keys_and_a_miss_without_a_loader() {
    let (s, _) = opened(CacheOptions::default());
    for k in ["b", "a", "c"] {
        s.set("c", k, json("1"), false).unwrap();
    }
    assert_eq!(s.keys("c").unwrap(), ["a", "b", "c"]);
    assert!(s.del("c", "b").unwrap());
    assert!(!s.del("c", "b").unwrap());
    assert_eq!(s.keys("c").unwrap(), ["a", "c"]);
    assert!(matches!(
        s.get("c", "b", args(w(1), false)).unwrap(),
        Lookup::Miss
    ));
}

#[test]
fn entries_expire_on_time_and_watchers_hear_it() {
    let (s, clock) = opened(CacheOptions::default().expire(Duration::from_millis(1000)));
    let mut rx = s.watch("c", 1, w(9), None).unwrap();
    s.set("c", "k", json("1"), false).unwrap();
    clock.advance(400);
    s.set("c", "j", json("2"), false).unwrap();
    assert_eq!(s.next_deadline(), Some(1000));
    clock.advance(599);
    s.tick();
    assert_eq!(s.keys("c").unwrap(), ["j", "k"]);
    clock.advance(1);
    // Expired even before the tick: a get does not return it.
    assert!(matches!(
        s.get("c", "k", args(w(1), false)).unwrap(),
        Lookup::Miss
    ));
    s.tick();
    assert_eq!(s.keys("c").unwrap(), ["j"]);
    clock.advance(400);
    s.tick();
    assert!(s.keys("c").unwrap().is_empty());
    let kinds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|c| (c.key, c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("k".into(), ChangeKind::Set),
            ("j".into(), ChangeKind::Set),
            ("k".into(), ChangeKind::Expired),
            ("j".into(), ChangeKind::Expired)
        ]
    );
    assert_eq!(s.stats()[0].1.expirations, 2);
}

#[test]
fn a_hit_reports_what_is_left_of_its_life() {
    let (s, clock) = opened(CacheOptions::default().expire(Duration::from_millis(1000)));
    s.set("c", "k", json("1"), false).unwrap();
    clock.advance(300);
    match s.get("c", "k", args(w(1), false)).unwrap() {
        Lookup::Hit(v) => assert_eq!(v.ttl_ms, Some(700)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn watch_one_key_sees_its_changes_in_order_and_unwatch_stops_them() {
    let (s, _) = opened(CacheOptions::default());
    let mut one = s.watch("c", 1, w(1), Some("k".into())).unwrap();
    s.set("c", "other", json("0"), false).unwrap();
    for i in 0..50 {
        s.set("c", "k", json(&i.to_string()), false).unwrap();
    }
    s.del("c", "k").unwrap();
    let seen: Vec<_> = std::iter::from_fn(|| one.try_recv().ok()).collect();
    assert_eq!(seen.len(), 51);
    for (i, c) in seen[..50].iter().enumerate() {
        assert_eq!((c.key.as_str(), c.kind), ("k", ChangeKind::Set));
        assert_eq!(c.value::<u32>().unwrap().unwrap(), i as u32);
    }
    assert_eq!(seen[50].kind, ChangeKind::Del);
    assert!(s.unwatch("c", 1, w(1)).unwrap());
    s.set("c", "k", json("1"), false).unwrap();
    assert!(one.try_recv().is_err());
}

#[test]
fn a_watcher_that_falls_behind_is_ended_not_grown() {
    let (s, _) = opened(CacheOptions::default());
    let mut rx = s.watch("c", 1, w(1), None).unwrap();
    for i in 0..WATCH_QUEUE + 10 {
        s.set("c", "k", json(&i.to_string()), false).unwrap();
    }
    let n = std::iter::from_fn(|| rx.try_recv().ok()).count();
    assert_eq!(n, WATCH_QUEUE);
    assert!(matches!(
        rx.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
}

#[test]
fn the_entry_bound_evicts_the_least_recently_used() {
    let (s, _) = opened(CacheOptions::default().max_entries(3));
    for k in ["a", "b", "c"] {
        s.set("c", k, json("1"), false).unwrap();
    }
    // "a" is used, so "b" is the least recently used.
    hit(s.get("c", "a", args(w(1), false)).unwrap());
    s.set("c", "d", json("1"), false).unwrap();
    assert_eq!(s.keys("c").unwrap(), ["a", "c", "d"]);
    assert_eq!(s.stats()[0].1.evictions, 1);
}

#[test]
fn the_byte_bound_evicts_and_a_value_too_large_is_refused() {
    let (s, _) = opened(CacheOptions::default().max_bytes(1024));
    let big = format!("\"{}\"", "x".repeat(250));
    for k in ["a", "b", "c", "d"] {
        s.set("c", k, json(&big), false).unwrap();
    }
    let st = s.stats()[0].1.clone();
    assert!(st.bytes <= 1024, "{st:?}");
    assert_eq!(s.keys("c").unwrap(), ["b", "c", "d"]);
    let huge = format!("\"{}\"", "x".repeat(2000));
    let e = s.set("c", "e", json(&huge), false).unwrap_err();
    assert!(e.to_string().contains("max_bytes"), "{e}");
}

#[test]
fn readers_are_told_once_when_their_entry_changes() {
    let (s, _) = opened(CacheOptions::default());
    let told = Arc::new(Mutex::new(Vec::new()));
    let t = told.clone();
    s.on_invalidate(Box::new(move |w, c, k| {
        t.lock().unwrap().push((w, c.to_string(), k.to_string()))
    }));
    s.set("c", "k", json("1"), false).unwrap();
    let track = |id| GetArgs {
        track: true,
        ..args(w(id), false)
    };
    hit(s.get("c", "k", track(1)).unwrap());
    hit(s.get("c", "k", track(1)).unwrap());
    hit(s.get("c", "k", track(2)).unwrap());
    hit(s.get("c", "k", args(w(3), false)).unwrap());
    s.set("c", "k", json("2"), false).unwrap();
    s.set("c", "k", json("3"), false).unwrap();
    let got = std::mem::take(&mut *told.lock().unwrap());
    assert_eq!(
        got,
        [(1, "c".into(), "k".into()), (2, "c".into(), "k".into())]
    );
    // A dead reader is forgotten.
    hit(s.get("c", "k", track(4)).unwrap());
    s.owner_gone(w(4));
    s.del("c", "k").unwrap();
    assert!(told.lock().unwrap().is_empty());
}

#[test]
fn names_keys_and_options_are_checked() {
    let (s, _) = store();
    for bad in ["", ".hidden", "a/b", &"x".repeat(65)] {
        assert!(s.open(bad, &CacheOptions::default()).is_err(), "{bad:?}");
    }
    assert!(s
        .open("c", &CacheOptions::default().max_entries(0))
        .is_err());
    s.open("c", &CacheOptions::default()).unwrap();
    // The local copy is each worker's own: it may differ.
    s.open("c", &CacheOptions::default().local_copy(false))
        .unwrap();
    let e = s
        .open("c", &CacheOptions::default().expire(Duration::from_secs(1)))
        .unwrap_err();
    assert!(matches!(e, CacheError::Options { .. }), "{e}");
    assert!(s.get("c", &"k".repeat(2000), args(w(1), false)).is_err());
    assert!(s.get("nope", "k", args(w(1), false)).is_err());
    assert!(s.open("p", &CacheOptions::default().persist(true)).is_err());
}

fn persistent(dir: &std::path::Path) -> Store {
    let s = Store::new(Some(dir.to_path_buf()), Arc::new(ManualClock::default()));
    s.open("p", &CacheOptions::default().persist(true)).unwrap();
    s
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("herd-cache-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_persistent_cache_is_read_back() {
    let dir = tempdir("back");
    let s = persistent(&dir);
    s.set("p", "a", json(r#"{"x":[1,2]}"#), false).unwrap();
    s.set("p", "b", json("\"two\""), false).unwrap();
    s.flush();
    drop(s);
    let s = persistent(&dir);
    assert_eq!(s.keys("p").unwrap(), ["a", "b"]);
    assert_eq!(
        hit(s.get("p", "a", args(w(1), false)).unwrap()),
        r#"{"x":[1,2]}"#
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["p.cache.json"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_file_is_reported_set_aside_and_the_cache_starts_empty() {
    let dir = tempdir("trunc");
    let s = persistent(&dir);
    s.set("p", "a", json("1"), false).unwrap();
    s.flush();
    drop(s);
    let path = persist::path(&dir, "p");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let s = persistent(&dir);
    assert!(s.keys("p").unwrap().is_empty());
    assert_eq!(s.stats()[0].1.corrupt_files, 1);
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(aside[0].starts_with("p.cache.json.corrupt-"), "{aside:?}");
    // And it persists again from empty.
    s.set("p", "b", json("2"), false).unwrap();
    s.flush();
    drop(s);
    assert_eq!(persistent(&dir).keys("p").unwrap(), ["b"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_waiter_that_keeps_a_copy_of_the_loaded_value_is_told_when_it_changes() {
    let (s, _) = opened(CacheOptions::default());
    let told = Arc::new(Mutex::new(Vec::new()));
    let t = told.clone();
    s.on_invalidate(Box::new(move |w, _, k| {
        t.lock().unwrap().push((w, k.to_string()))
    }));
    let tracking = |id| GetArgs {
        track: true,
        ..args(w(id), true)
    };
    let lease = token(s.get("c", "k", tracking(1)).unwrap());
    let mut rx2 = waiting(s.get("c", "k", tracking(2)).unwrap());
    let mut rx3 = waiting(s.get("c", "k", args(w(3), true)).unwrap());
    assert!(s.fill("c", "k", lease, Ok(json("1"))).unwrap());
    assert!(matches!(rx2.try_recv().unwrap(), Waited::Hit(_)));
    assert!(matches!(rx3.try_recv().unwrap(), Waited::Hit(_)));
    s.set("c", "k", json("2"), false).unwrap();
    // Worker 2 kept a copy of what it waited for; worker 3 did not ask to.
    assert_eq!(*told.lock().unwrap(), [(2, "k".to_string())]);
}
