//! The consumer-owned "reported" loss counters in the ring's header: a consumer that takes a
//! ring over (an agent restarted) learns which drops its predecessor already reported, so drops
//! made before any consumer held the ring, or while none did, are reported once — and only once.

use std::os::fd::AsFd;

use logtap_protocol::ring::{
    Consumer, ConsumerOptions, MIN_RING_SIZE, Producer, RecordMeta, RingCounters, create_ring_memfd,
};

fn meta() -> RecordMeta {
    RecordMeta {
        stream: 1,
        flags: 0,
        file_index: 0,
        pid: 7,
        seq: 0,
        time_ns: 1,
    }
}

#[test]
fn reported_counters_survive_a_consumer_restart() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 7).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    // Drops before any consumer exists.
    producer.note_dropped(3, 300);
    let first = Consumer::open(fd.try_clone().unwrap(), ConsumerOptions::default()).unwrap();
    assert_eq!(
        first.reported(),
        RingCounters::default(),
        "a new ring has reported nothing"
    );
    let now = first.counters();
    assert_eq!((now.dropped_records, now.dropped_bytes), (3, 300));
    first.set_reported(&now);
    drop(first);

    // Drops while no consumer holds the ring.
    producer.note_dropped(2, 20);
    producer.try_push(&meta(), b"still delivered").unwrap();
    let mut second = Consumer::open(fd.try_clone().unwrap(), ConsumerOptions::default()).unwrap();
    let (seen, now) = (second.reported(), second.counters());
    assert_eq!(seen, now_with(3, 300));
    assert_eq!(
        now.dropped_records - seen.dropped_records,
        2,
        "only the new drops are due"
    );
    assert_eq!(now.dropped_bytes - seen.dropped_bytes, 20);
    let mut payload = Vec::new();
    assert!(second.next(&mut payload).unwrap().is_some());
    assert_eq!(payload, b"still delivered");
}

fn now_with(records: u64, bytes: u64) -> RingCounters {
    RingCounters {
        dropped_records: records,
        dropped_bytes: bytes,
        abandoned_records: 0,
    }
}
