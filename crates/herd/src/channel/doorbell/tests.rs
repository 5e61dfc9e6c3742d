//! The doorbells' tests: the page, the watch and its backoff.
use super::*;

#[test]
fn backoff_doubles_its_skips_and_a_ring_resets_it() {
    let b = Backoff::default();
    assert!(b.watch_now());
    b.watched(false);
    let skipped = |b: &Backoff| (0..).take_while(|_| !b.watch_now()).count();
    assert_eq!(skipped(&b), 2);
    b.watched(false);
    assert_eq!(skipped(&b), 4);
    for _ in 0..20 {
        b.watched(false);
        let _ = skipped(&b);
    }
    b.watched(false);
    assert_eq!(skipped(&b), 1 << MAX_FAILS, "the skips stop growing");
    b.watched(true);
    assert!(b.watch_now(), "after a ring, the next sleep is watched");
    assert!(b.watch_now());
}

/// A worker as the primary forks it: a claimed slot, and the worker's own
/// mapping of the page, as it opens it.
fn a_worker(bells: &Arc<Doorbells>) -> (ReadMark, Doorbell) {
    let fd = bells.fd.try_clone().unwrap();
    let mark = bells.claim().unwrap();
    let bell = Doorbell::open(&fd, mark.slot()).unwrap();
    (mark, bell)
}

#[test]
fn a_ring_in_another_mapping_ends_the_watch() {
    let bells = Arc::new(Doorbells::new(Duration::from_secs(30)).unwrap());
    let (_mark, bell) = a_worker(&bells);
    let spinner = Spinner::new(bells);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Rings until the watch saw it, however late the watch starts.
    let ringer = std::thread::spawn({
        let done = done.clone();
        move || {
            while !done.load(Ordering::Relaxed) {
                bell.ring();
                std::thread::yield_now();
            }
        }
    });
    // A watch may give way (this machine runs other tests): watch
    // again until one sees a ring, long before the limit.
    let t = Instant::now();
    while spinner.watch().0 != Outcome::Rang {
        assert!(t.elapsed() < Duration::from_secs(10), "no ring seen");
    }
    done.store(true, Ordering::Relaxed);
    ringer.join().unwrap();
}

#[test]
fn a_watch_with_no_ring_ends_by_its_limit() {
    let spinner = Spinner::new(Arc::new(Doorbells::new(Duration::from_millis(5)).unwrap()));
    let t = Instant::now();
    assert_ne!(spinner.watch().0, Outcome::Rang);
    let took = t.elapsed();
    // At its limit, or sooner if it gave way to another process.
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn only_a_sleep_after_a_request_is_watched() {
    let spinner = Spinner::new(Arc::new(Doorbells::new(Duration::from_millis(1)).unwrap()));
    // Nothing asked: no watch.
    spinner.before_park();
    assert_eq!(
        spinner.bells.stats(),
        WatchStats {
            limit_us: 1000,
            ..WatchStats::default()
        }
    );
    spinner.bells.conversing();
    spinner.before_park();
    let stats = spinner.bells.stats();
    assert_eq!(stats.rang, 0, "no worker rang");
    assert_eq!(stats.timed_out + stats.gave_way, 1, "watched: {stats:?}");
    assert!(stats.seconds > 0.0 && stats.seconds < 2.0, "{stats:?}");
    assert_eq!(spinner.backoff.fails.load(Ordering::Relaxed), 1);
    assert!(
        !spinner.bells.conversing.load(Ordering::Relaxed),
        "the next sleep needs a request of its own"
    );
}

#[test]
fn the_page_cannot_be_resized_by_a_worker() {
    use nix::errno::Errno;
    use nix::fcntl::{fallocate, FallocateFlags};
    use std::os::fd::AsRawFd;
    let bells = Doorbells::new(DEFAULT_SPIN).unwrap();
    let fd = bells.fd.try_clone().unwrap();
    let e = nix::unistd::ftruncate(&fd, 0).unwrap_err();
    assert_eq!(e, Errno::EPERM, "sealed against shrinking");
    // Nor grown, even without changing its size (memory of its own that
    // the primary would hold for ever).
    let e = nix::unistd::ftruncate(&fd, 1 << 40).unwrap_err();
    assert_eq!(e, Errno::EPERM, "sealed against growing");
    let e = fallocate(
        fd.as_raw_fd(),
        FallocateFlags::FALLOC_FL_KEEP_SIZE,
        4096,
        1 << 30,
    )
    .unwrap_err();
    assert_eq!(e, Errno::EPERM, "sealed against growing, size kept");
    // Nor can more seals be added (a write seal would fail the workers'
    // mappings).
    let e = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::F_SEAL_WRITE),
    )
    .unwrap_err();
    assert_eq!(e, Errno::EPERM);
    // Garbage in every word changes only what the watch reads: a live
    // worker's slot looks rung, and no watch starts.
    let bells = Arc::new(bells);
    let _mark = bells.claim().unwrap();
    let bell = Doorbell::open(&fd, 5).unwrap();
    for w in bell.page.words() {
        w.store(u64::MAX, Ordering::Relaxed);
    }
    assert!(bells.unread());
}

#[test]
fn a_ring_not_yet_read_is_left_to_epoll() {
    let bells = Arc::new(Doorbells::new(Duration::from_millis(1)).unwrap());
    let (mark, bell) = a_worker(&bells);
    let spinner = Spinner::new(bells.clone());
    let watches = |s: &Spinner| {
        let st = s.bells.stats();
        st.rang + st.timed_out + st.gave_way
    };
    // Worker 3 wrote after its channel was last read: its frame may wait
    // in the socket, so the thread goes to epoll at once.
    bell.ring();
    bells.conversing();
    spinner.before_park();
    assert_eq!(watches(&spinner), 0, "no watch while a frame may be unread");
    // Read since: the next sleep after a request is watched.
    mark.reading();
    bells.conversing();
    spinner.before_park();
    assert_eq!(watches(&spinner), 1);
}

#[test]
fn the_limit_is_microseconds_up_to_a_millisecond() {
    assert_eq!(parse_spin(None), Ok(DEFAULT_SPIN));
    assert_eq!(parse_spin(Some("0")), Ok(Duration::ZERO));
    assert_eq!(parse_spin(Some(" 20 ")), Ok(Duration::from_micros(20)));
    assert_eq!(parse_spin(Some("1000")), Ok(MAX_SPIN));
    for bad in ["1001", "-1", "20us", ""] {
        let why = parse_spin(Some(bad)).unwrap_err();
        assert!(
            why.contains(ENV_SPIN_US) && why.contains("from 0 (no watch) to 1000"),
            "{why}"
        );
    }
}

#[test]
fn a_file_that_could_shrink_is_refused() {
    let fd =
        nix::sys::memfd::memfd_create(c"not-sealed", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
            .unwrap();
    nix::unistd::ftruncate(&fd, 4096).unwrap();
    let e = Doorbell::open(&fd, 1).unwrap_err();
    assert!(e.to_string().contains("not sealed"), "{e}");
}

#[test]
fn each_live_worker_has_a_slot_of_its_own_and_gives_it_back() {
    let bells = Arc::new(Doorbells::new(DEFAULT_SPIN).unwrap());
    let marks: Vec<ReadMark> = (0..SLOTS).map(|_| bells.claim().unwrap()).collect();
    let mut slots: Vec<usize> = marks.iter().map(ReadMark::slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, (0..SLOTS).collect::<Vec<_>>());
    assert!(bells.claim().is_none(), "a 65th worker goes without");
    let fd = bells.fd.try_clone().unwrap();
    // A worker rings, then its channel's reader ends (it died): its slot
    // is given back, and what it rang is no reason to skip a watch.
    let gone = marks[7].slot();
    Doorbell::open(&fd, gone).unwrap().ring();
    assert!(bells.unread());
    drop(marks);
    assert!(!bells.unread());
    let next = bells.claim().unwrap();
    assert!(!bells.unread(), "a reused slot starts read");
    Doorbell::open(&fd, next.slot()).unwrap().ring();
    assert!(bells.unread(), "and its new holder's rings count");
}
