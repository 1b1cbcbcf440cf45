//! The HTTP side on a public address: a client that sends its headers slowly
//! or not at all is dropped, an idle keep-alive connection is closed, one
//! address cannot hold more than its share of connections, and none of it
//! touches an upgraded WebSocket.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::sip::*;

/// How long until the server closes `stream` (reads until EOF or reset), at most `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(t0.elapsed()),
        }
    }
    None
}

fn connect_from(ip: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

#[test]
fn slow_silent_and_idle_connections_are_closed_and_websockets_are_not() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--http-header-timeout", "1"]);

    // Headers that never finish (slowloris), and nothing at all.
    let mut slow = TcpStream::connect(server.http).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let mut silent = TcpStream::connect(server.http).unwrap();
    // A request answered, then the keep-alive connection left idle.
    let mut idle = TcpStream::connect(server.http).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut ws = Agent::connect(&format!("ws://{}/v1/events", server.http));

    for (name, stream) in [("slow headers", &mut slow), ("silent", &mut silent)] {
        let t = closed_within(stream, Duration::from_secs(5)).unwrap_or_else(|| panic!("{name} connection still open after 5 s"));
        assert!(t < Duration::from_millis(2500), "{name}: closed after {t:?} for a 1 s timeout");
    }
    let mut answered = [0u8; 256];
    idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let n = idle.read(&mut answered).unwrap();
    assert!(String::from_utf8_lossy(&answered[..n]).starts_with("HTTP/1.1 200"), "the request on it was answered");
    assert!(closed_within(&mut idle, Duration::from_secs(5)).is_some(), "an idle keep-alive connection stays open");

    // The WebSocket, idle as long, still answers a ping.
    ws.ws.send(tungstenite::Message::Ping(b"still there?".to_vec().into())).unwrap();
    let end = Instant::now() + Duration::from_secs(2);
    let mut pong = false;
    while !pong && Instant::now() < end {
        match ws.ws.read() {
            Ok(tungstenite::Message::Pong(p)) => pong = &p[..] == b"still there?",
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("the events WebSocket was closed: {e}"),
        }
    }
    assert!(pong, "no pong from the events WebSocket after 3 s idle");
    let mut server = server;
    server.assert_alive();
}

#[test]
fn one_address_gets_its_share_of_connections() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--http-max-conns-per-ip", "3"]);
    let me = Ipv4Addr::new(127, 0, 4, 2);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from(me, server.http)).collect();
    std::thread::sleep(Duration::from_millis(200)); // accepted and counted
    let mut fourth = connect_from(me, server.http);
    let t = closed_within(&mut fourth, Duration::from_secs(3)).expect("a fourth connection from one address stays open");
    assert!(t < Duration::from_secs(1), "closed after {t:?}");

    // Another address is served meanwhile.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 4, 3), server.http);
    other.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    other.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = other.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");

    // A closed connection gives its slot back.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut again = connect_from(me, server.http);
    again.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    again.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = again.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
}
