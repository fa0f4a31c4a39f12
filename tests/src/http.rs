//! A minimal HTTP/1.1 client for the tests and benches: `GET` on the agent's metrics and health
//! endpoints. (The deploy rehearsals keep their own HTTP/1.0 probe: their assertions read the
//! protocol version back from nginx's access log.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path` on `addr` with `Connection: close`: the status code and the body, or `None` when
/// nothing answers or the answer is not HTTP.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    // What arrived before an error (a reset after the answer) still counts.
    let _ = s.read_to_string(&mut text);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

/// [`get`] on `127.0.0.1:port`.
pub fn get_local(port: u16, path: &str) -> Option<(u16, String)> {
    get(SocketAddr::from(([127, 0, 0, 1], port)), path)
}
