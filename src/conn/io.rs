//! Reading from a connection's socket and waiting on it. Reads and writes
//! are raw non-blocking system calls on the fd; the runtime is used only
//! to wait for readiness, so an idle connection pins no buffer.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::net::TcpStream;

use super::Conn;

/// Reads what the socket has into `buf` without waiting; `Ok(0)` is the end
/// of the stream, `WouldBlock` means wait for readability.
pub fn recv_into(fd: RawFd, buf: &mut bytes::BytesMut, min_spare: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let spare = buf.spare_capacity_mut();
    loop {
        // SAFETY: recv writes at most `spare.len()` bytes into the spare
        // capacity; we only mark as initialised what it reports written.
        let r = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr() as *mut libc::c_void,
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if r >= 0 {
            // SAFETY: the kernel initialised `r` bytes.
            unsafe { buf.set_len(buf.len() + r as usize) };
            return Ok(r as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads at least one byte (or the end of the stream), waiting for
/// readability only when the socket is empty. While waiting, an empty `buf`
/// is released so idle connections hold no read buffer.
pub async fn read_some(
    stream: &TcpStream,
    buf: &mut bytes::BytesMut,
    min_spare: usize,
) -> io::Result<usize> {
    loop {
        match recv_into(stream.as_raw_fd(), buf, min_spare) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if buf.is_empty() {
                    *buf = bytes::BytesMut::new();
                }
                stream.readable(false).await?;
            }
            other => return other,
        }
    }
}

/// Yields to the other tasks of the shard once, so one busy connection
/// cannot starve the rest.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Prepares an accepted socket: non-blocking (reads and writes are direct
/// system calls that must never block the shard), no Nagle delay (the
/// shard corks frames itself), TCP keepalive probes after `keepalive_s`
/// idle seconds (every 10 s, 6 of them; 0 = off) and `TCP_USER_TIMEOUT`
/// (sent data unacknowledged that long drops the connection; 0 = the
/// kernel's default), so the kernel finds peers that vanished.
pub fn prepare_socket(stream: &TcpStream, keepalive_s: u64, user_timeout_ms: u64) {
    let fd = stream.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 && flags & libc::O_NONBLOCK == 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    let _ = stream.set_nodelay(true);
    // SAFETY: `fd` stays open for the borrow (the stream owns it).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    if keepalive_s > 0 {
        let ka = socket2::TcpKeepalive::new()
            .with_time(std::time::Duration::from_secs(keepalive_s))
            .with_interval(std::time::Duration::from_secs(10))
            .with_retries(6);
        let _ = sock.set_tcp_keepalive(&ka);
    }
    if user_timeout_ms > 0 {
        let _ = sock.set_tcp_user_timeout(Some(std::time::Duration::from_millis(user_timeout_ms)));
    }
}

/// Sends `bytes` (one short answer) and closes the write side, without
/// waiting. What the client already sent is read and dropped first: closing
/// a socket with unread data resets it, and the client would lose the
/// answer.
pub fn answer_and_close(stream: &TcpStream, bytes: &[u8]) {
    let fd = stream.as_raw_fd();
    let mut scratch = [0u8; 4096];
    // SAFETY: non-blocking reads into a local buffer and a non-blocking
    // send of a short answer, on an fd we own; if the socket cannot take
    // the answer now, the client just sees the close.
    unsafe {
        for _ in 0..4 {
            let n = libc::recv(
                fd,
                scratch.as_mut_ptr() as *mut libc::c_void,
                scratch.len(),
                libc::MSG_DONTWAIT,
            );
            if n <= 0 {
                break;
            }
        }
        libc::send(
            fd,
            bytes.as_ptr() as *const libc::c_void,
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// After the last frame was queued: waits (bounded) for the peer to finish,
/// reading and discarding, so that closing does not reset the connection
/// before the peer has read our last frame.
pub async fn linger(conn: &Conn, deadline: std::time::Duration) {
    let mut scratch = bytes::BytesMut::new();
    let _ = monoio::time::timeout(deadline, async {
        while !conn.is_closed() {
            scratch.clear();
            match read_some(&conn.stream, &mut scratch, 4096).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
