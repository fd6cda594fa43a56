//! The kernel's round-trip estimate for a TCP connection (`getsockopt(TCP_INFO)`, Linux).
//!
//! The only `unsafe` in the crate: one `getsockopt` call into a zeroed `libc::tcp_info`.
//! Neither tokio, socket2 nor rustix exposes `TCP_INFO`, and the crates that do generate their
//! bindings with bindgen at build time, which is a heavy dependency for two fields.
#![allow(unsafe_code)]

use std::time::Duration;

/// What the kernel knows about a TCP connection's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimes {
    /// The smallest RTT seen on the connection (`tcpi_min_rtt`), or the smoothed RTT
    /// (`tcpi_rtt`) on kernels without it.
    pub rtt: Duration,
    /// Time since the last data segment arrived (`tcpi_last_data_recv`; milliseconds, at the
    /// kernel's jiffy resolution).
    pub since_last_recv: Duration,
}

/// `None` if the call fails (not TCP, or not Linux) or the kernel has no RTT yet.
#[cfg(target_os = "linux")]
pub fn tcp_times(sock: &impl std::os::fd::AsRawFd) -> Option<TcpTimes> {
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
    (us > 0).then(|| TcpTimes {
        rtt: Duration::from_micros(u64::from(us)),
        since_last_recv: Duration::from_millis(u64::from(info.tcpi_last_data_recv)),
    })
}

/// Not measured off Linux.
#[cfg(not(target_os = "linux"))]
pub fn tcp_times<T>(_sock: &T) -> Option<TcpTimes> {
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
        use std::io::{Read, Write};
        let (mut c, mut s) = (c, s);
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        for sock in [&c, &s] {
            let t = tcp_times(sock).expect("TCP_INFO on a TCP socket");
            assert!(t.rtt < Duration::from_millis(50), "{t:?}");
        }
        // The server received one byte 30 ms ago (jiffy resolution: 1-10 ms).
        let since = tcp_times(&s).unwrap().since_last_recv;
        assert!(since >= Duration::from_millis(15), "{since:?}");
        assert!(since < Duration::from_secs(5), "{since:?}");
    }

    #[test]
    fn not_a_tcp_socket() {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(tcp_times(&u), None);
    }
}
