//! The echo server that plays a pod's workload, and its client side.
//!
//! Served over HTTP/1.1 (any path) and UDP on the same port, it answers every request
//! with one JSON object: `{"pod":..,"node":..,"client":"ip:port"}`, the client being the
//! source address it saw — how tests prove that a client's address was (or was not)
//! preserved on the way in. Pure parts (reply body, HTTP framing) are plain functions;
//! [`EchoServer`] is the small std-threads I/O shell around them.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// The line the server prints on stdout once it is listening.
pub const READY_LINE: &str = "herald-lab echo: listening";
/// Longest request head we read before answering anyway.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Connections served at once; more are closed without an answer.
const MAX_CONCURRENT_CONNECTIONS: usize = 256;
/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the echo server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReply {
    /// The pod name the server was started with.
    pub pod: String,
    /// The node name the server was started with.
    pub node: String,
    /// The client's address as the server saw it, `ip:port` (`[v6]:port` for IPv6).
    pub client: String,
}

impl EchoReply {
    /// The client address without the port.
    pub fn client_ip(&self) -> Result<IpAddr> {
        self.client
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .map_err(|e| LabError::parse(format!("echo client address {:?}", self.client), e))
    }

    /// Parses a reply body.
    pub fn parse(body: &str) -> Result<EchoReply> {
        serde_json::from_str(body.trim())
            .map_err(|e| LabError::parse(format!("echo reply {body:?}"), e))
    }
}

/// Who this server claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoIdentity {
    pub pod: String,
    pub node: String,
}

/// The JSON body for a request from `client`. IPv4-mapped IPv6 addresses (a dual-stack
/// socket's view of an IPv4 client) are shown as plain IPv4.
pub fn reply_body(identity: &EchoIdentity, client: SocketAddr) -> String {
    let client = SocketAddr::new(client.ip().to_canonical(), client.port());
    let reply = EchoReply {
        pod: identity.pod.clone(),
        node: identity.node.clone(),
        client: client.to_string(),
    };
    // Serializing three strings cannot fail; fall back to an empty object regardless.
    serde_json::to_string(&reply).unwrap_or_else(|_| "{}".to_string())
}

/// A complete HTTP/1.1 response carrying `body` as JSON, closing the connection.
pub fn http_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// True once `received` holds a whole request head (ends with an empty line).
pub fn request_head_complete(received: &[u8]) -> bool {
    received.windows(4).any(|w| w == b"\r\n\r\n") || received.windows(2).any(|w| w == b"\n\n")
}

/// A running echo server (TCP and UDP on one port). Stops when dropped.
pub struct EchoServer {
    port: u16,
    stop: Arc<AtomicBool>,
    wake: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds TCP and UDP on `address` (port 0 picks a free port; UDP then takes the same
    /// number) and starts serving.
    pub fn start(identity: EchoIdentity, address: SocketAddr) -> io::Result<EchoServer> {
        let listener = TcpListener::bind(address)?;
        let port = listener.local_addr()?.port();
        let udp = UdpSocket::bind(SocketAddr::new(address.ip(), port))?;
        udp.set_read_timeout(Some(Duration::from_millis(200)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let identity = Arc::new(identity);
        let wake_ip = match address.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let tcp_thread = {
            let stop = Arc::clone(&stop);
            let identity = Arc::clone(&identity);
            std::thread::spawn(move || serve_tcp(&listener, &identity, &stop))
        };
        let udp_thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve_udp(&udp, &identity, &stop))
        };
        Ok(EchoServer {
            port,
            stop,
            wake: SocketAddr::new(wake_ip, port),
            threads: vec![tcp_thread, udp_thread],
        })
    }

    /// Binds the dual-stack wildcard `[::]:port`, falling back to `0.0.0.0:port` where
    /// IPv6 is unavailable.
    pub fn start_any(identity: EchoIdentity, port: u16) -> io::Result<EchoServer> {
        match EchoServer::start(
            identity.clone(),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        ) {
            Ok(server) => Ok(server),
            Err(_) => {
                EchoServer::start(identity, SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port))
            }
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process is killed.
    pub fn run_forever(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the TCP thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve_tcp(listener: &TcpListener, identity: &Arc<EchoIdentity>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONCURRENT_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let identity = Arc::clone(identity);
        let active = Arc::clone(&active);
        std::thread::spawn(move || {
            let _ = answer_http(stream, &identity);
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn answer_http(mut stream: TcpStream, identity: &EchoIdentity) -> io::Result<()> {
    let client = stream.peer_addr()?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut received = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    while !request_head_complete(&received) && received.len() < MAX_REQUEST_HEAD {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
    }
    stream.write_all(&http_response(&reply_body(identity, client)))?;
    stream.flush()
}

fn serve_udp(socket: &UdpSocket, identity: &EchoIdentity, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        match socket.recv_from(&mut buf) {
            Ok((_, client)) => {
                let _ = socket.send_to(reply_body(identity, client).as_bytes(), client);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Sends one UDP datagram to `server` and parses the echo reply (waiting at most `timeout`).
pub fn probe_udp(server: SocketAddr, timeout: Duration) -> Result<EchoReply> {
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let io_err = |what: &str, e| LabError::io(format!("{what} (UDP probe of {server})"), e);
    let socket = UdpSocket::bind(bind).map_err(|e| io_err("binding", e))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| io_err("setting a timeout", e))?;
    socket
        .send_to(b"herald-lab probe", server)
        .map_err(|e| io_err("sending", e))?;
    let mut buf = [0u8; 2048];
    let (n, _) = socket
        .recv_from(&mut buf)
        .map_err(|e| io_err("receiving", e))?;
    EchoReply::parse(&String::from_utf8_lossy(&buf[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> EchoIdentity {
        EchoIdentity {
            pod: "echo-1".into(),
            node: "n1".into(),
        }
    }

    #[test]
    fn the_reply_names_pod_node_and_client() -> Result<()> {
        let body = reply_body(
            &identity(),
            "198.51.100.100:40000"
                .parse()
                .map_err(|e| LabError::parse("addr", e))?,
        );
        let reply = EchoReply::parse(&body)?;
        assert_eq!(reply.pod, "echo-1");
        assert_eq!(reply.node, "n1");
        assert_eq!(reply.client, "198.51.100.100:40000");
        Ok(())
    }

    #[test]
    fn an_ipv4_mapped_client_is_reported_as_plain_ipv4() -> Result<()> {
        let mapped: SocketAddr = "[::ffff:198.51.100.100]:1234"
            .parse()
            .map_err(|e| LabError::parse("addr", e))?;
        let reply = EchoReply::parse(&reply_body(&identity(), mapped))?;
        assert_eq!(reply.client_ip()?, IpAddr::from([198, 51, 100, 100]));
        let v6: SocketAddr = "[2001:db8:2::100]:1234"
            .parse()
            .map_err(|e| LabError::parse("addr", e))?;
        assert!(reply_body(&identity(), v6).contains("[2001:db8:2::100]:1234"));
        Ok(())
    }

    #[test]
    fn the_http_response_declares_the_exact_body_length() {
        let response = String::from_utf8_lossy(&http_response("{\"a\":1}")).into_owned();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(response.contains("Content-Length: 7\r\n"));
        assert!(response.ends_with("\r\n\r\n{\"a\":1}"));
    }

    #[test]
    fn a_request_head_is_complete_only_after_the_blank_line() {
        assert!(!request_head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(request_head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    }

    #[test]
    fn the_server_answers_http_and_udp_on_loopback() -> Result<()> {
        let server = EchoServer::start(identity(), SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| LabError::io("starting echo server", e))?;
        let port = server.port();

        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| LabError::io("connecting", e))?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .map_err(|e| LabError::io("writing", e))?;
        let local = stream
            .local_addr()
            .map_err(|e| LabError::io("local addr", e))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| LabError::io("reading", e))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let reply = EchoReply::parse(body)?;
        assert_eq!(reply.client, local.to_string());

        let udp = probe_udp(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )?;
        assert_eq!(udp.pod, "echo-1");
        assert_eq!(udp.client_ip()?, IpAddr::from([127, 0, 0, 1]));
        drop(server);
        Ok(())
    }
}
