//! BFD's UDP sockets (RFC 5881 single hop, RFC 5883 multihop) and the TTL rules.
//!
//! Owns: the ports, the source-port range, sending with TTL / hop limit 255, and reading the
//! TTL / hop limit of each received datagram (`IP_RECVTTL`, `IPV6_RECVHOPLIMIT` and
//! `recvmsg`) so that the caller can refuse packets that crossed a router ([`ttl_acceptable`],
//! pure). Nothing here knows the BFD packet format.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Destination port of single-hop control packets (RFC 5881 §4).
pub const SINGLE_HOP_PORT: u16 = 3784;
/// Destination port of multihop control packets (RFC 5883 §3).
pub const MULTIHOP_PORT: u16 = 4784;
/// Source ports of control packets (RFC 5881 §4: 49152 through 65535).
pub const SOURCE_PORT_FIRST: u16 = 49152;
/// TTL / hop limit every control packet is sent with (RFC 5881 §5, RFC 5883 §5 via GTSM).
pub const SEND_TTL: u32 = 255;
/// Smallest received TTL a multihop session accepts when its profile says nothing.
pub const DEFAULT_MULTIHOP_MINIMUM_TTL: u8 = 254;

/// Which kind of session a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hop {
    /// Directly connected peer: received TTL must be 255 (RFC 5881 §5).
    Single,
    /// Peer behind routers: received TTL must be at least `minimum_ttl` (RFC 5883 §5 leaves
    /// the check to configuration).
    Multi { minimum_ttl: u8 },
}

impl Hop {
    pub fn port(self) -> u16 {
        match self {
            Hop::Single => SINGLE_HOP_PORT,
            Hop::Multi { .. } => MULTIHOP_PORT,
        }
    }

    pub fn is_multihop(self) -> bool {
        matches!(self, Hop::Multi { .. })
    }
}

/// Whether a packet received with `ttl` may be processed (`None`: the kernel did not say).
pub fn ttl_acceptable(hop: Hop, ttl: Option<u8>) -> bool {
    match (hop, ttl) {
        (_, None) => false,
        (Hop::Single, Some(ttl)) => ttl == 255,
        (Hop::Multi { minimum_ttl }, Some(ttl)) => ttl >= minimum_ttl,
    }
}

/// Binds the receiving socket of one family and port, with the TTL / hop limit of each
/// datagram reported. IPv6 sockets are IPv6-only (IPv4 has its own socket).
pub fn listen(family_v6: bool, port: u16) -> io::Result<UdpSocket> {
    let domain = if family_v6 {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    let address: SocketAddr = if family_v6 {
        socket.set_only_v6(true)?;
        set_int_option(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVHOPLIMIT,
            1,
        )?;
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))
    } else {
        set_int_option(socket.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
    };
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(address))?;
    UdpSocket::from_std(socket.into())
}

/// Opens the sending socket of one session: bound to `local` (or any address) and a source
/// port in 49152..=65535 picked from `seed`, TTL / hop limit 255, connected to the peer.
pub fn sender(local: Option<IpAddr>, peer: SocketAddr, seed: u32) -> io::Result<UdpSocket> {
    let domain = if peer.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if peer.is_ipv6() {
        socket.set_only_v6(true)?;
        socket.set_unicast_hops_v6(SEND_TTL)?;
    } else {
        socket.set_ttl_v4(SEND_TTL)?;
    }
    socket.set_nonblocking(true)?;
    let ip = local.unwrap_or(match peer {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let span = u32::from(u16::MAX - SOURCE_PORT_FIRST) + 1;
    let mut last_error = io::Error::from(io::ErrorKind::AddrInUse);
    // A bounded number of tries over the range; the kernel refuses ports in use.
    for attempt in 0..64u32 {
        let offset = seed.wrapping_add(attempt.wrapping_mul(7919)) % span;
        let port = SOURCE_PORT_FIRST + offset as u16;
        match socket.bind(&SockAddr::from(SocketAddr::new(ip, port))) {
            Ok(()) => {
                socket.connect(&SockAddr::from(peer))?;
                return UdpSocket::from_std(socket.into());
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// One received datagram: its length in `buffer`, the sender, and the TTL / hop limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    pub ttl: Option<u8>,
}

/// Waits for the next datagram on a socket from [`listen`].
pub async fn receive(socket: &UdpSocket, buffer: &mut [u8]) -> io::Result<Received> {
    let fd = socket.as_raw_fd();
    socket
        .async_io(Interest::READABLE, || recvmsg_with_ttl(fd, buffer))
        .await
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt_int(fd, level, name, value)
}

#[allow(unsafe_code)]
fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size; the kernel copies it
    // and keeps no pointer. `fd` is a socket owned by the caller for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `recvmsg(2)` of one datagram with its `IP_TTL` / `IPV6_HOPLIMIT` control message.
#[allow(unsafe_code)]
fn recvmsg_with_ttl(fd: RawFd, buffer: &mut [u8]) -> io::Result<Received> {
    // Room for one int-sized control message (and a second, should the kernel add one).
    let mut control = [0u64; 16];
    // SAFETY: zeroed sockaddr_storage is a valid (empty) value of that plain C struct.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: zeroed msghdr is a valid value of that plain C struct; every pointer in it is set
    // below to live buffers that outlive the call.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_name = (&mut storage as *mut libc::sockaddr_storage).cast();
    header.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `header` points at `storage`, `iov` (over `buffer`) and `control`, all live and
    // writable for their stated lengths; the kernel writes within those lengths.
    let n = unsafe { libc::recvmsg(fd, &mut header, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel just filled, bounded by
    // `msg_controllen`; each data pointer is read as the int the kernel documents for IP_TTL
    // and IPV6_HOPLIMIT, with an unaligned read.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            let level = (*cmsg).cmsg_level;
            let kind = (*cmsg).cmsg_type;
            if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
            {
                let value = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                ttl = u8::try_from(value).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    let from =
        sockaddr_to_std(&storage).ok_or_else(|| io::Error::other("unknown address family"))?;
    Ok(Received {
        len: n as usize,
        from,
        ttl,
    })
}

#[allow(unsafe_code)]
fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_hop_accepts_only_ttl_255() {
        assert!(ttl_acceptable(Hop::Single, Some(255)));
        assert!(!ttl_acceptable(Hop::Single, Some(254)));
        assert!(!ttl_acceptable(Hop::Single, Some(1)));
        assert!(!ttl_acceptable(Hop::Single, None));
    }

    #[test]
    fn multihop_accepts_ttls_down_to_its_minimum() {
        let hop = Hop::Multi { minimum_ttl: 250 };
        assert!(ttl_acceptable(hop, Some(255)));
        assert!(ttl_acceptable(hop, Some(250)));
        assert!(!ttl_acceptable(hop, Some(249)));
        assert!(!ttl_acceptable(hop, None));
    }

    #[test]
    fn ports_follow_rfc_5881_and_5883() {
        assert_eq!(Hop::Single.port(), 3784);
        assert_eq!(Hop::Multi { minimum_ttl: 254 }.port(), 4784);
    }

    #[tokio::test]
    async fn a_datagram_over_loopback_arrives_with_the_ttl_it_was_sent_with() {
        // Loopback is present in every namespace; ports above the BFD ones, picked by the kernel.
        let receiver = listen(false, 0).expect("listen");
        let port = receiver.local_addr().expect("bound").port();
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let sender = sender(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), peer, 12345).expect("sender");
        let source = sender.local_addr().expect("bound");
        assert!(source.port() >= SOURCE_PORT_FIRST);
        sender.send(b"hello").await.expect("send");
        let mut buffer = [0u8; 64];
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            receive(&receiver, &mut buffer),
        )
        .await
        .expect("in time")
        .expect("received");
        assert_eq!(&buffer[..got.len], b"hello");
        assert_eq!(got.from, source);
        assert_eq!(got.ttl, Some(255));
    }
}
