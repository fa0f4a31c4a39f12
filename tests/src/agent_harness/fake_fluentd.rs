//! A minimal Forward server for testing the forward output: it decodes what it receives with the
//! protocol crate's [`ServerDecoder`], records every event, answers acks, and can run the
//! shared-key handshake, refuse to ack, or hang up on purpose.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use logtap_protocol::forward::{ClientMessage, Helo, Pong, ServerDecoder, Value};
use serde_json::{Map, Value as Json};

/// How the fake server behaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Require this shared key (sends HELO first).
    pub shared_key: Option<String>,
    /// Close the connection without acking the first N chunks received (they must be resent).
    pub hang_up_on_first: usize,
}

/// One received event.
#[derive(Clone, Debug)]
pub struct Received {
    pub tag: String,
    pub time_ns: u64,
    pub record: Json,
    pub compressed: bool,
    pub chunk: Option<Vec<u8>>,
}

/// The running server.
pub struct FakeFluentd {
    pub port: u16,
    events: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::F32(f) => Json::from(f64::from(*f)),
        Value::F64(f) => Json::from(*f),
        Value::Str(b) | Value::Bin(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(a) => Json::Array(a.iter().map(json).collect()),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k.as_raw().unwrap_or(b"?")).into_owned(),
                        json(v),
                    )
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Ext(_, _) => Json::Null,
    }
}

impl FakeFluentd {
    /// Listens on 127.0.0.1 at `port` (0: any free port).
    pub fn start(port: u16, behaviour: Behaviour) -> FakeFluentd {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind fake fluentd");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let hang_ups = Arc::new(AtomicUsize::new(behaviour.hang_up_on_first));
        let (ev, st) = (Arc::clone(&events), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let (ev, st, b, h) = (
                            Arc::clone(&ev),
                            Arc::clone(&st),
                            behaviour.clone(),
                            Arc::clone(&hang_ups),
                        );
                        conns.push(std::thread::spawn(move || serve(sock, &ev, &st, &b, &h)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        FakeFluentd {
            port,
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// Events received so far.
    pub fn events(&self) -> Vec<Received> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until at least `n` events arrived (panics after `limit`).
    pub fn wait_events(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let e = self.events();
            if e.len() >= n {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "fake fluentd got {} of {n} events in {limit:?}",
                e.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the listener and every connection; returns what was received.
    pub fn stop(mut self) -> Vec<Received> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.events()
    }
}

impl Drop for FakeFluentd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut sock: TcpStream,
    events: &Mutex<Vec<Received>>,
    stop: &AtomicBool,
    b: &Behaviour,
    hang_ups: &AtomicUsize,
) {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut decoder = ServerDecoder::default();
    let mut buf = BytesMut::new();
    let mut helo = None;
    if b.shared_key.is_some() {
        let h = Helo {
            nonce: bytes::Bytes::from_static(b"0123456789abcdef"),
            auth: bytes::Bytes::new(),
            keepalive: true,
        };
        let mut out = Vec::new();
        h.encode(&mut out);
        if sock.write_all(&out).is_err() {
            return;
        }
        helo = Some(h);
    }
    let mut authenticated = helo.is_none();
    let mut chunk = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match sock.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        loop {
            let msg = match decoder.decode(&mut buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => panic!("fake fluentd cannot decode what it got: {e}"),
            };
            match msg {
                ClientMessage::Ping(ping) => {
                    let (Some(h), Some(key)) = (&helo, &b.shared_key) else {
                        return;
                    };
                    let verdict = ping.verify(h, "fake-fluentd", key.as_bytes(), |_| None);
                    authenticated = verdict.is_ok();
                    let mut out = Vec::new();
                    Pong::answer(&ping, h, "fake-fluentd", key.as_bytes(), verdict)
                        .encode(&mut out);
                    let _ = sock.write_all(&out);
                    if !authenticated {
                        return;
                    }
                }
                ClientMessage::Events(batch) => {
                    if !authenticated {
                        return;
                    }
                    if hang_ups
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return; // received, never acked: the client must resend it
                    }
                    let compressed =
                        batch.options.compressed == logtap_protocol::forward::Compression::Gzip;
                    let chunk = batch.options.chunk.as_ref().map(|c| c.bytes.to_vec());
                    {
                        let mut ev = events.lock().unwrap();
                        for e in &batch.events {
                            ev.push(Received {
                                tag: batch.tag.clone(),
                                time_ns: e.time.as_nanos(),
                                record: json(&e.record),
                                compressed,
                                chunk: chunk.clone(),
                            });
                        }
                    }
                    if let Some(ack) = batch.ack()
                        && sock.write_all(&ack.to_vec()).is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}
