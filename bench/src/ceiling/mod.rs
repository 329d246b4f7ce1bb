//! The ceiling: the most this kernel can deliver for a scenario.
//!
//! A bare io_uring server with no protocol logic beyond what the load
//! needs: WebSocket for the generator ([`ws`]), or RESP for redis-benchmark
//! and redis-cli ([`resp`]). A message is encoded once and copied into every
//! member's corked output buffer. Each loop turn makes exactly one
//! `io_uring_enter` (`submit_and_wait(1)`), which submits every receive and
//! at most one send per connection, and reaps completions. There is no JSON
//! parsing, no sequence numbers, no history, no acks beyond what the
//! protocol needs, no allocation per delivery: whatever ringcast costs
//! above this is its own.

mod resp;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

use anyhow::{bail, Result};
use io_uring::{opcode, squeue, types, IoUring};

pub use ws::accept_key;

/// What the ceiling speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// WebSocket with the generator's chat frames.
    Ws,
    /// RESP: PUBLISH, SUBSCRIBE and PING.
    Resp,
}

/// Handles bytes received on a slot; returns how many were used, or `None`
/// to close.
type Handler = fn(&mut Hub, usize, &[u8]) -> Option<usize>;

/// What the loop and the protocol handlers share.
#[derive(Default)]
struct Hub {
    conns: Vec<Option<Conn>>,
    /// Member slots of each room, by room id.
    rooms: Vec<Vec<usize>>,
    room_ids: HashMap<Vec<u8>, u32>,
    /// Slots with output this turn (a slot may repeat).
    dirty: Vec<usize>,
    /// A message, encoded once per publish.
    frame: Vec<u8>,
    /// Deliveries dropped at a member's cap.
    dropped: u64,
}

impl Hub {
    /// The id of the room `name`, made on first use.
    fn room(&mut self, name: &[u8]) -> usize {
        let next = self.room_ids.len() as u32;
        let id = *self.room_ids.entry(name.to_vec()).or_insert(next) as usize;
        if id == self.rooms.len() {
            self.rooms.push(Vec::new());
        }
        id
    }

    /// Makes `slot` a member of room `id`.
    fn join(&mut self, slot: usize, id: usize) -> Option<&mut Conn> {
        let c = self.conns[slot].as_mut()?;
        self.rooms[id].push(slot);
        c.rooms.push(id as u32);
        Some(c)
    }

    /// Copies `frame` into the output of every member of room `id` whose
    /// unsent bytes stay within `cap` (the others' copies are dropped and
    /// counted); returns how many got it.
    fn fan_out(&mut self, id: usize, cap: usize) -> usize {
        let mut n = 0;
        for &m in &self.rooms[id] {
            if let Some(mc) = self.conns[m].as_mut() {
                if mc.out.len() + self.frame.len() > cap {
                    self.dropped += 1;
                    continue;
                }
                if mc.out.is_empty() {
                    self.dirty.push(m);
                }
                mc.out.extend_from_slice(&self.frame);
                n += 1;
            }
        }
        n
    }

    /// Closes `slot`: out of its rooms, its socket closed, the slot free.
    fn close(&mut self, slot: usize, free: &mut Vec<usize>) {
        if let Some(c) = self.conns[slot].take() {
            for r in c.rooms {
                self.rooms[r as usize].retain(|&s| s != slot);
            }
            crate::net::close(c.fd);
            free.push(slot);
        }
    }
}

const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;
const RBUF: usize = 4 << 10;
/// Unsent bytes kept per connection at most; past it deliveries are dropped and counted.
const OUT_CAP: usize = 8 << 20;

struct Conn {
    fd: RawFd,
    /// Past the WebSocket upgrade (always, for RESP).
    open: bool,
    rbuf: Box<[u8]>,
    /// Bytes of a partial request or frame kept between receives.
    pending: Vec<u8>,
    /// Corked output: appended to during a turn, sent at its end.
    out: Vec<u8>,
    /// The buffer a send in flight points into, and how much of it is done.
    sending: Vec<u8>,
    sent: usize,
    in_flight: bool,
    rooms: Vec<u32>,
    closing: bool,
}

fn ud(kind: u64, slot: usize) -> u64 {
    kind | ((slot as u64) << 8)
}

fn listen(addr: SocketAddrV4) -> Result<RawFd> {
    // SAFETY: plain socket syscalls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        let one: i32 = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const i32 as *const libc::c_void,
            4,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        ) != 0
        {
            bail!(
                "ceiling: cannot bind {addr}: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::listen(fd, 4096) != 0 {
            bail!("ceiling: listen: {}", std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn push(ring: &mut IoUring, e: squeue::Entry) {
    // SAFETY: every buffer an entry points to lives in a `Conn` (or the
    // accept state) that is not dropped or moved while the operation is in flight.
    while unsafe { ring.submission().push(&e) }.is_err() {
        match ring.submit() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => {
                r.expect("io_uring submit");
            }
        }
    }
}

/// Serves until killed.
pub fn serve(addr: SocketAddrV4, core: Option<usize>, entries: u32, proto: Protocol) -> Result<()> {
    let handle: Handler = match proto {
        Protocol::Ws => ws::handle,
        Protocol::Resp => resp::handle,
    };
    if !addr.ip().is_loopback() {
        bail!("the ceiling listens on loopback only");
    }
    if let Some(c) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    crate::procstat::raise_nofile();
    let lfd = listen(addr)?;
    let mut ring = IoUring::new(entries.max(256))?;
    let mut hub = Hub {
        frame: Vec::with_capacity(4096),
        ..Hub::default()
    };
    let mut free: Vec<usize> = Vec::new();
    push(
        &mut ring,
        opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
            .build()
            .user_data(ud(ACCEPT, 0)),
    );
    eprintln!("ceiling listening on {addr}");
    loop {
        // A signal (SIGSTOP and SIGCONT, a debugger, perf) interrupts the
        // wait: wait again rather than stop serving.
        match ring.submit_and_wait(1) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        let cqes: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (data, res) in cqes {
            let slot = (data >> 8) as usize;
            match data & 0xff {
                ACCEPT => {
                    if res >= 0 {
                        let fd = res;
                        let one: i32 = 1;
                        // SAFETY: setsockopt on a descriptor we own.
                        unsafe {
                            libc::setsockopt(
                                fd,
                                libc::IPPROTO_TCP,
                                libc::TCP_NODELAY,
                                &one as *const i32 as *const libc::c_void,
                                4,
                            )
                        };
                        let c = Conn {
                            fd,
                            // RESP has no handshake.
                            open: proto == Protocol::Resp,
                            rbuf: vec![0u8; RBUF].into_boxed_slice(),
                            pending: Vec::new(),
                            out: Vec::new(),
                            sending: Vec::new(),
                            sent: 0,
                            in_flight: false,
                            rooms: Vec::new(),
                            closing: false,
                        };
                        let s = match free.pop() {
                            Some(s) => {
                                hub.conns[s] = Some(c);
                                s
                            }
                            None => {
                                hub.conns.push(Some(c));
                                hub.conns.len() - 1
                            }
                        };
                        let c = hub.conns[s].as_mut().expect("new slot");
                        push(
                            &mut ring,
                            opcode::Recv::new(types::Fd(fd), c.rbuf.as_mut_ptr(), RBUF as u32)
                                .build()
                                .user_data(ud(RECV, s)),
                        );
                    }
                    push(
                        &mut ring,
                        opcode::Accept::new(
                            types::Fd(lfd),
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                        )
                        .build()
                        .user_data(ud(ACCEPT, 0)),
                    );
                }
                RECV => {
                    let Some(c) = hub.conns[slot].as_mut() else {
                        continue;
                    };
                    if res <= 0 {
                        c.closing = true;
                    } else {
                        let n = res as usize;
                        let mut buf = std::mem::take(&mut c.pending);
                        buf.extend_from_slice(&c.rbuf[..n]);
                        let used = handle(&mut hub, slot, &buf);
                        let c = hub.conns[slot].as_mut().expect("live slot");
                        match used {
                            Some(u) => {
                                buf.drain(..u);
                                c.pending = buf;
                            }
                            None => c.closing = true,
                        }
                    }
                    let c = hub.conns[slot].as_mut().expect("live slot");
                    if !c.closing {
                        push(
                            &mut ring,
                            opcode::Recv::new(types::Fd(c.fd), c.rbuf.as_mut_ptr(), RBUF as u32)
                                .build()
                                .user_data(ud(RECV, slot)),
                        );
                    } else if !c.in_flight {
                        hub.close(slot, &mut free);
                    }
                }
                SEND => {
                    let Some(c) = hub.conns[slot].as_mut() else {
                        continue;
                    };
                    c.in_flight = false;
                    if res < 0 {
                        c.closing = true;
                    } else {
                        c.sent += res as usize;
                        if c.sent < c.sending.len() {
                            let rest = &c.sending[c.sent..];
                            push(
                                &mut ring,
                                opcode::Send::new(
                                    types::Fd(c.fd),
                                    rest.as_ptr(),
                                    rest.len() as u32,
                                )
                                .build()
                                .user_data(ud(SEND, slot)),
                            );
                            c.in_flight = true;
                            continue;
                        }
                        c.sending.clear();
                        c.sent = 0;
                        if !c.out.is_empty() {
                            hub.dirty.push(slot);
                        }
                    }
                    if c.closing && !c.in_flight {
                        hub.close(slot, &mut free);
                    }
                }
                _ => {}
            }
        }
        // End of the turn: one send per connection with corked output.
        for slot in hub.dirty.drain(..) {
            let Some(c) = hub.conns[slot].as_mut() else {
                continue;
            };
            if c.in_flight || c.out.is_empty() || c.closing {
                continue;
            }
            std::mem::swap(&mut c.out, &mut c.sending);
            c.sent = 0;
            push(
                &mut ring,
                opcode::Send::new(types::Fd(c.fd), c.sending.as_ptr(), c.sending.len() as u32)
                    .build()
                    .user_data(ud(SEND, slot)),
            );
            c.in_flight = true;
        }
    }
}
