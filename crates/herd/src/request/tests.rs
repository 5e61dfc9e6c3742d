//! Pending requests: timeouts by the sweeper, answers, close; a request
//! answered by two clones at once.

use super::*;

const SENT: fn(u64) -> std::future::Ready<Result<(), Error>> = |_| std::future::ready(Ok(()));

fn timed_out(r: &Result<Message, Error>, after: Duration) -> bool {
    matches!(r, Err(Error::Timeout { worker: Some(3), after: a }) if *a == after)
}

#[tokio::test(start_paused = true)]
async fn each_request_times_out_at_its_own_deadline_earliest_first() {
    let p = Pending::new(Some(3), &tokio::runtime::Handle::current());
    let start = Instant::now();
    let (long, short) = (Duration::from_secs(30), Duration::from_millis(200));
    // The long one first: the sweeper sleeps to its deadline, and the
    // short one, asked after, must wake it earlier.
    let mut slow = std::pin::pin!(p.ask_raw(SENT, long));
    assert!(futures_poll_once(slow.as_mut()).await.is_none());
    // The sweeper runs now, and sleeps to the long one's deadline.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    let r = bounded(p.ask_raw(SENT, short)).await;
    assert!(timed_out(&r, short), "{r:?}");
    assert_eq!(start.elapsed(), short);
    let r = bounded(slow).await;
    assert!(timed_out(&r, long), "{r:?}");
    assert_eq!(start.elapsed(), long);
    assert!(p.shared.state.lock().unwrap().waiting.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_request_answered_in_time_does_not_time_out_and_leaves_nothing() {
    let p = Arc::new(Pending::new(Some(3), &tokio::runtime::Handle::current()));
    let ask = p.ask_raw(SENT, Duration::from_secs(1));
    let answer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        p.answer(1, Ok(Message::from_json("7")));
    };
    let (r, ()) = bounded(async { tokio::join!(ask, answer) }).await;
    assert_eq!(r.unwrap().decode::<u32>().unwrap(), 7);
    // The sweeper wakes at the old deadline, finds nothing, and a
    // later request still times out on time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    let r = bounded(p.ask_raw(SENT, Duration::from_millis(50))).await;
    assert!(timed_out(&r, Duration::from_millis(50)), "{r:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_counts_the_wait_to_send() {
    let p = Pending::new(Some(3), &tokio::runtime::Handle::current());
    let never = |_| std::future::pending::<Result<(), Error>>();
    let r = bounded(p.ask_raw(never, Duration::from_millis(300))).await;
    assert!(timed_out(&r, Duration::from_millis(300)), "{r:?}");
    assert!(p.shared.state.lock().unwrap().waiting.is_empty());
}

#[tokio::test(start_paused = true)]
async fn close_fails_what_waits_and_ends_the_sweeper() {
    let p = Pending::new(Some(3), &tokio::runtime::Handle::current());
    let ask = p.ask_raw(SENT, Duration::from_secs(30));
    let close = async {
        tokio::task::yield_now().await;
        p.close("the worker exited");
    };
    let (r, ()) = tokio::join!(ask, close);
    assert!(
        matches!(&r, Err(Error::NoReply { why, .. }) if why == "the worker exited"),
        "{r:?}"
    );
    bounded(async {
        while !p.sweeper.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(matches!(
        p.ask_raw(SENT, Duration::from_secs(1)).await,
        Err(Error::WorkerGone { id: 3 })
    ));
}

#[test]
fn a_request_fails_instead_of_hanging_when_the_channels_runtime_shuts_down() {
    let here = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A request waiting when the channel's runtime (its sweeper's) goes.
    let there = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let p = Pending::new(Some(3), there.handle());
    let r = here.block_on(async {
        let ask = p.ask_raw(SENT, Duration::from_secs(30));
        let shut = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            there.shutdown_background();
        };
        let (r, ()) =
            tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(ask, shut) })
                .await
                .expect("the request hung");
        r
    });
    assert!(
        matches!(&r, Err(Error::NoReply { why, .. }) if why.contains("shut down")),
        "{r:?}"
    );
    // A table made on a runtime already gone (its sweeper never ran):
    // a request fails at once.
    let gone = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let handle = gone.handle().clone();
    drop(gone);
    let p = Pending::new(Some(3), &handle);
    let r = here.block_on(p.ask_raw(SENT, Duration::from_secs(30)));
    assert!(matches!(r, Err(Error::WorkerGone { id: 3 })), "{r:?}");
}

/// `f`'s output, or a failed test after a minute (of the paused clock):
/// a request the sweeper never times out fails, never hangs.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the sweeper never ended this request")
}

/// Polls `f` once: its output if it is ready.
async fn futures_poll_once<F: Future + Unpin>(f: F) -> Option<F::Output> {
    let mut f = f;
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut f).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn of_two_clones_answering_at_once_one_sends_and_the_other_is_told() {
    use std::io::Read;
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let outbox = Outbox::start(crate::channel::unix_stream(ours.into()).unwrap(), 16 << 20);
    // 9 MiB waiting to be written: a reply now waits for room, as on a
    // busy channel, between its check and its send.
    outbox.user(&"x".repeat(9 << 20)).await.unwrap();
    let first = Request::arrived(1, Message::from_json("1"), None, outbox, Arc::default()).unwrap();
    let second = first.clone();
    let (a, b, ()) = tokio::join!(first.reply(&"a"), second.reply(&"b"), async {
        // Only now is the channel read (both replies have been asked).
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while matches!(theirs.read(&mut buf), Ok(n) if n > 0) {}
        });
    });
    assert!(a.is_ok(), "{a:?}");
    assert!(matches!(b, Err(Error::AlreadyAnswered { id: 1 })), "{b:?}");
}
