//! A signal handler that pushes into the ring while the interrupted thread is itself in the
//! middle of a push (Contract 1: hooks run in signal handlers too). The handler's push simply
//! reserves after the interrupted one; both streams arrive complete and in order. Own test
//! binary: a signal disposition is process-wide.

mod ring_support;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use logtap_protocol::ring::{
    Consumer, MIN_RING_SIZE, Producer, PushError, RecordMeta, create_ring_memfd,
};
use ring_support::*;

static PRODUCER: OnceLock<Producer> = OnceLock::new();
/// Next counter of the handler's stream (id 1); advanced only when a push succeeded.
static HANDLER_NEXT: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    let Some(producer) = PRODUCER.get() else {
        return;
    };
    let counter = HANDLER_NEXT.load(Ordering::Relaxed);
    let mut buf = [0u8; MAX_TEST_PAYLOAD];
    let len = len_for(1, counter, producer.max_payload());
    fill_payload(&mut buf, 1, counter, len);
    // Full: the record is retried by the next signal, so the stream stays gap-free.
    if producer
        .try_push(&meta_for(1, counter), &buf[..len])
        .is_ok()
    {
        HANDLER_NEXT.store(counter + 1, Ordering::Relaxed);
    }
}

#[test]
fn signal_handler_pushes_in_the_middle_of_a_push_on_the_same_thread() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    assert!(PRODUCER.set(Producer::map(fd.as_fd()).unwrap()).is_ok());
    let producer = PRODUCER.get().unwrap();
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, opts(2_000)).unwrap();
    // SAFETY: installs a handler that only runs async-signal-safe code (the ring push).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    // The writer keeps pushing until the handler has pushed enough records, then stops the
    // signaler and waits for it: no signal may target a thread that has exited.
    const MIN_MAIN: u32 = 5_000;
    const MIN_HANDLED: u32 = 300;
    let stop = Arc::new(AtomicBool::new(false));
    let signaler_done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let (stop, signaler_done) = (Arc::clone(&stop), Arc::clone(&signaler_done));
        std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() }).unwrap();
            let mut buf = [0u8; MAX_TEST_PAYLOAD];
            let mut counter = 0;
            while counter < MIN_MAIN || HANDLER_NEXT.load(Ordering::Relaxed) < MIN_HANDLED {
                let len = len_for(0, counter, max);
                fill_payload(&mut buf, 0, counter, len);
                while let Err(e) = producer.try_push(&meta_for(0, counter), &buf[..len]) {
                    assert_eq!(e, PushError::Full);
                    check_deadline(deadline, "main stream push");
                    std::thread::yield_now();
                }
                counter += 1;
                check_deadline(deadline, "handler records");
            }
            stop.store(true, Ordering::SeqCst);
            while !signaler_done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            counter
        })
    };
    let target = rx.recv().unwrap();
    let signaler = std::thread::spawn(move || {
        let mut sent = 0u32;
        while !stop.load(Ordering::SeqCst) {
            // SAFETY: the writer thread waits for `signaler_done` before it exits.
            unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
            sent += 1;
            std::thread::sleep(Duration::from_micros(20));
        }
        signaler_done.store(true, Ordering::SeqCst);
        sent
    });
    let mut order = OrderCheck::new(2);
    let mut payload = Vec::new();
    let record = |meta: &RecordMeta, payload: &[u8], order: &mut OrderCheck| {
        let (id, counter) = check_payload(meta, payload, max);
        order.see(id, counter);
    };
    while !writer.is_finished() {
        check_deadline(deadline, "consumer");
        match consumer.next(&mut payload).unwrap() {
            Some(meta) => record(&meta, &payload, &mut order),
            None => std::thread::yield_now(),
        }
    }
    let main_count = writer.join().unwrap();
    let sent = signaler.join().unwrap();
    drain(&mut consumer, 3, deadline, |meta, p| {
        record(meta, p, &mut order)
    });
    let handled = HANDLER_NEXT.load(Ordering::Relaxed);
    assert_eq!(order.counts(), &[main_count, handled]);
    assert!(
        handled >= MIN_HANDLED,
        "{handled} records from {sent} signals"
    );
    assert_eq!(consumer.counters().abandoned_records, 0);
}
