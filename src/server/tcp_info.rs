//! The kernel's round-trip estimate for a TCP connection (`getsockopt(TCP_INFO)`, Linux).
//!
//! The only `unsafe` in the crate: one `getsockopt` call into a zeroed `libc::tcp_info`.
//! Neither tokio, socket2 nor rustix exposes `TCP_INFO`, and the crates that do generate their
//! bindings with bindgen at build time, which is a heavy dependency for two fields.
#![allow(unsafe_code)]

use std::time::Duration;

/// The smallest RTT the kernel has seen on the connection (`tcpi_min_rtt`), falling back to
/// the smoothed RTT (`tcpi_rtt`) on kernels without it. `None` if the call fails (not TCP,
/// or not Linux).
#[cfg(target_os = "linux")]
pub fn tcp_rtt(sock: &impl std::os::fd::AsRawFd) -> Option<Duration> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let size = std::mem::size_of::<libc::tcp_info>();
    let mut len = libc::socklen_t::try_from(size).ok()?;
    // SAFETY: `info` points to `size` writable bytes, and `len` tells the kernel so; the kernel
    // writes at most `len` bytes and never keeps the pointer. The fd is borrowed from a live
    // socket for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: `tcp_info` is plain integers, for which all-zero bytes (what the kernel did not
    // overwrite) are a valid value.
    let info = unsafe { info.assume_init() };
    let us = if info.tcpi_min_rtt > 0 {
        info.tcpi_min_rtt
    } else {
        info.tcpi_rtt
    };
    (us > 0).then(|| Duration::from_micros(u64::from(us)))
}

/// Not measured off Linux.
#[cfg(not(target_os = "linux"))]
pub fn tcp_rtt<T>(_sock: &T) -> Option<Duration> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn loopback_connection_has_a_small_rtt() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        for sock in [&c, &s] {
            let rtt = tcp_rtt(sock).expect("TCP_INFO on a TCP socket");
            assert!(rtt < Duration::from_millis(50), "{rtt:?}");
        }
    }

    #[test]
    fn not_a_tcp_socket() {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(tcp_rtt(&u), None);
    }
}
