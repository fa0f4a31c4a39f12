//! Prove-it 4: nginx from Debian's packages (master + 2 workers) with its `access_log` tapped
//! and suppressed: N requests → N access-log lines at the receiver, `access.log` stays empty.
//! Ring and DATA frames. nginx is installed by `.ci/run`; without it the test fails.

mod interceptor_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use interceptor_support::*;

const REQUESTS: usize = 50;

fn nginx_binary() -> &'static str {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("nginx is not installed: `apt-get install -y nginx-light` (the .ci/run script does)");
}

fn get(port: u16, i: usize) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET /req-{i} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.1 200")
}

/// Starts nginx on 127.0.0.1:`port` under the library and waits until it listens; `Err` with
/// its error output when it exits first (e.g. the port was taken).
fn start_nginx(
    s: &Setup,
    nginx: &str,
    access: &Path,
    port: u16,
) -> Result<std::process::Child, String> {
    let dir = s.dir.path();
    let conf = format!(
        "user root;\nworker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {a};\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n",
        d = dir.display(),
        a = access.display(),
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    // A failed attempt's errors must not be read as this one's.
    let _ = std::fs::remove_file(dir.join("error.log"));
    let mut cmd = s.command(nginx);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"));
    cmd.env("LLT_TAP_FILE", access)
        .env("LLT_SUPPRESS_TAP_FILE", "true");
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("start nginx");
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(st) = child.try_wait().unwrap() {
            let mut e = String::new();
            child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            return Err(format!(
                "{st:?}: {e} {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            ));
        }
        assert!(Instant::now() < end, "nginx did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

fn nginx(t: Transport) {
    let nginx = nginx_binary();
    let s = Setup::new("nginx", t);
    let dir = s.dir.path();
    let access = dir.join("access.log");
    // nginx must be given its port: try candidates until one is not taken meanwhile.
    let mut attempt = 0;
    let (mut child, port) = loop {
        attempt += 1;
        let port = logtap_tests::artifacts::candidate_port();
        match start_nginx(&s, nginx, &access, port) {
            Ok(child) => break (child, port),
            Err(e)
                if attempt < logtap_tests::artifacts::PORT_ATTEMPTS
                    && logtap_tests::artifacts::says_address_in_use(&e) => {}
            Err(e) => panic!("nginx exited: {e}"),
        }
    };
    // The readiness probe above was a connection without a request: nginx does not log it.
    for i in 0..REQUESTS {
        assert!(get(port, i), "request {i} failed");
    }
    let arrived = s.receiver.wait_for(SETTLE, |c| {
        c.lines(FILE)
            .iter()
            .filter(|l| l.contains("GET /req-"))
            .count()
            >= REQUESTS
    });
    // Stop nginx (SIGQUIT: graceful) and make sure it is gone.
    // SAFETY: sending a signal to our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = s.receiver.snapshot();
    let lines: Vec<String> = c
        .lines(FILE)
        .into_iter()
        .filter(|l| l.contains("GET /req-"))
        .collect();
    assert!(
        arrived,
        "{} of {REQUESTS} access-log lines arrived; errors {:?}",
        lines.len(),
        c.errors
    );
    assert_eq!(lines.len(), REQUESTS, "{lines:?}");
    for i in 0..REQUESTS {
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains(&format!("GET /req-{i} ")))
                .count(),
            1,
            "request {i}"
        );
    }
    // Written by the workers (not the master), with the tap file's index.
    let pids: std::collections::HashSet<u32> = c
        .records
        .iter()
        .filter(|r| r.stream == FILE)
        .map(|r| r.pid)
        .collect();
    assert!(
        !pids.contains(&child.id()),
        "the master does not serve requests"
    );
    assert_eq!(
        std::fs::metadata(&access).unwrap().len(),
        0,
        "access.log must stay empty"
    );
}

#[test]
fn nginx_access_log_ring() {
    nginx(Transport::Ring);
}

#[test]
fn nginx_access_log_socket() {
    nginx(Transport::Socket);
}
