//! Thin, allocation-free wrappers over the socket and epoll system calls the
//! workers use. Errors are raw `errno` values: on the hot path `EAGAIN` is
//! normal flow, not an exceptional case.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn setopt(fd: RawFd, level: i32, name: i32, v: i32) {
    // SAFETY: `v` outlives the call and the length matches its type.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as u32,
        );
    }
}

/// Starts a non-blocking TCP connect to `to`, from `from` if given (the port is
/// chosen at connect time, so each source address has its own port range).
pub fn connect_nonblocking(to: SocketAddrV4, from: Option<Ipv4Addr>) -> Result<RawFd, i32> {
    // SAFETY: plain socket syscalls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(errno());
        }
        setopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        if let Some(ip) = from {
            setopt(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
            let sa = sockaddr(SocketAddrV4::new(ip, 0));
            let sl = std::mem::size_of::<libc::sockaddr_in>() as u32;
            if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, sl) != 0 {
                let e = errno();
                libc::close(fd);
                return Err(e);
            }
        }
        let sa = sockaddr(to);
        let sl = std::mem::size_of::<libc::sockaddr_in>() as u32;
        if libc::connect(fd, &sa as *const _ as *const libc::sockaddr, sl) != 0 {
            let e = errno();
            if e != libc::EINPROGRESS {
                libc::close(fd);
                return Err(e);
            }
        }
        Ok(fd)
    }
}

/// The pending socket error (`SO_ERROR`), 0 when the connect succeeded.
pub fn take_error(fd: RawFd) -> i32 {
    let mut v: i32 = 0;
    let mut l = std::mem::size_of::<i32>() as u32;
    // SAFETY: `v` and `l` are valid for writes of their sizes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut v as *mut i32 as *mut libc::c_void,
            &mut l,
        )
    };
    if r != 0 {
        errno()
    } else {
        v
    }
}

/// `read(2)`: bytes read, or errno.
#[inline]
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)`: bytes written, or errno.
#[inline]
pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for reads of its length.
    let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// `close(2)`.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and forgets it afterwards.
    unsafe { libc::close(fd) };
}

/// An epoll instance, closed on drop.
pub struct Epoll {
    fd: RawFd,
    /// `epoll_pwait2` is missing (kernels before 5.11): fall back to ms timeouts.
    no_pwait2: std::cell::Cell<bool>,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> Result<Self, i32> {
        // SAFETY: no pointers involved.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            Err(errno())
        } else {
            Ok(Epoll {
                fd,
                no_pwait2: std::cell::Cell::new(!cfg!(any(
                    target_arch = "x86_64",
                    target_arch = "aarch64"
                ))),
            })
        }
    }

    /// Registers `fd` edge-triggered for input, output and hang-up, tagged `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> Result<(), i32> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event.
        let r = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r != 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    /// Waits up to `timeout_ns` for events; returns how many were filled in.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ns: u64) -> usize {
        let max = events.len() as i32;
        let r = if self.no_pwait2.get() {
            let ms = timeout_ns.div_ceil(1_000_000).min(i32::MAX as u64) as i32;
            // SAFETY: `events` is valid for `max` entries.
            unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), max, ms) }
        } else {
            let ts = libc::timespec {
                tv_sec: (timeout_ns / 1_000_000_000) as i64,
                tv_nsec: (timeout_ns % 1_000_000_000) as i64,
            };
            // 441 is epoll_pwait2 on x86_64 and aarch64 (the only arches that take this path).
            // SAFETY: epoll_pwait2(epfd, events, maxevents, timeout, sigmask = NULL, sigsetsize).
            let r = unsafe {
                libc::syscall(
                    441,
                    self.fd,
                    events.as_mut_ptr(),
                    max,
                    &ts as *const libc::timespec,
                    std::ptr::null::<libc::c_void>(),
                    0usize,
                )
            } as i32;
            if r < 0 && errno() == libc::ENOSYS {
                self.no_pwait2.set(true);
                return self.wait(events, timeout_ns);
            }
            r
        };
        r.max(0) as usize
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        close(self.fd);
    }
}
