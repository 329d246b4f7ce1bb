//! One generator thread: its share of the sockets, one edge-triggered epoll
//! set, one 64 KiB read buffer, and its share of the publish schedule.
//!
//! Each loop turn: poll the control generations, start due connects, send due
//! publishes, wait in `epoll_pwait2` until the next scheduled send (ns
//! timeout, so sends are not rounded to milliseconds), then drain every ready
//! socket with reads into the shared buffer. Only a partial trailing frame is
//! copied into the connection's carry buffer.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::clock::now_ns;
use crate::control::{Control, Layout, StepPlan};
use crate::net;
use crate::scan::{self, Scanner, Stamp};
use crate::sched::Schedule;
use crate::stats::{self, StepCounts};
use crate::target::{self, ProtoError, ProtoState, Sink, Wire};
use crate::token::{self, TokenVia};
use crate::track::SeqTracker;
use crate::wsframe::{self, Handshake};

/// What a worker sends back when the coordinator collects a step.
#[derive(Debug)]
pub struct WorkerReport {
    /// Worker index.
    pub worker: u32,
    /// The step's counts (reset after each report).
    pub counts: StepCounts,
    /// Time from connect start to ready, per socket (cumulative).
    pub connect_latency: Histogram<u64>,
    /// Deliveries whose ringcast `seq` was not the next one expected.
    pub seq_anomalies: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Connecting,
    Upgrading,
    Joining,
    Ready,
    Closed,
}

struct Conn {
    fd: RawFd,
    state: State,
    /// Global socket index.
    index: u32,
    publisher: Option<u32>,
    counter: u64,
    connect_start: u64,
    proto: ProtoState,
    carry: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// Per-publisher streams as seen here, indexed by publisher / rooms.
    streams: Vec<SeqTracker>,
    /// The room's `seq` as seen here (ringcast only).
    seq: SeqTracker,
    /// Placed in a room after its `welcome` (shard-local placement).
    placed: bool,
}

/// Loop-local state that the receive sink needs besides the connection.
struct Step {
    plan: StepPlan,
    counts: StepCounts,
    seq_anomalies: u64,
    received: u64,
    expected: u64,
}

struct Recv<'a> {
    now: u64,
    rooms: u32,
    step: &'a mut Step,
    streams: &'a mut Vec<SeqTracker>,
    seq: &'a mut SeqTracker,
    joined: Option<Option<u64>>,
    welcome: Option<u32>,
}

impl Sink for Recv<'_> {
    #[inline]
    fn delivery(&mut self, s: Stamp, seq: Option<u64>) {
        let p = &self.step.plan;
        if s.sent_ns >= p.measure_start_ns && s.sent_ns < p.measure_end_ns {
            let latency = self.now.saturating_sub(s.sent_ns);
            stats::record(&mut self.step.counts.latency, latency);
            self.step.counts.stalls.observe(self.now, latency);
        }
        let idx = (s.publisher / self.rooms.max(1)) as usize;
        if idx >= self.streams.len() {
            self.streams.resize_with(idx + 1, SeqTracker::default);
        }
        let t = &mut self.streams[idx];
        let (u, d, r) = (t.unique, t.duplicated, t.reordered);
        t.observe(s.counter);
        let c = &mut self.step.counts;
        if t.unique != u {
            c.delivered += 1;
            self.step.received += 1;
            if self.now >= p.measure_start_ns && self.now < p.measure_end_ns {
                c.delivered_in_window += 1;
            }
        }
        c.duplicated += t.duplicated - d;
        c.reordered += t.reordered - r;
        if let Some(n) = seq {
            if n != self.seq.next() {
                self.step.seq_anomalies += 1;
            }
            self.seq.observe(n);
        }
    }
    fn unparsed(&mut self) {
        self.step.counts.unparsed += 1;
    }
    fn joined(&mut self, seq: Option<u64>) {
        self.joined = Some(seq);
    }
    fn error(&mut self) {
        self.step.counts.server_errors += 1;
    }
    fn welcome(&mut self, shard: u32) {
        self.welcome = Some(shard);
    }
}

/// Runs worker `id` until `ctl.quit`.
pub fn run(id: u32, layout: Arc<Layout>, ctl: Arc<Control>, tx: Sender<WorkerReport>) {
    if let Some(&core) = layout.cores.get(id as usize % layout.cores.len().max(1)) {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
    let wire = layout.target.wire();
    let ep = net::Epoll::new().expect("epoll_create1");
    let mut conns: Vec<Conn> = (id..layout.sockets())
        .step_by(layout.threads as usize)
        .map(|index| {
            let (mut room, mut publisher) = layout.role(index);
            let defer_join =
                layout.shard_local > 0 && index < layout.connections && layout.rooms > 0;
            if defer_join {
                (room, publisher) = (None, None);
            }
            Conn {
                fd: -1,
                state: State::Waiting,
                index,
                publisher,
                counter: 0,
                connect_start: 0,
                proto: ProtoState {
                    room,
                    room_no: room.map_or(0, |r| layout.room_numbers[r as usize]),
                    defer_join,
                    await_welcome: layout.await_welcome,
                    rng: index.wrapping_mul(2_654_435_761) | 1,
                    ..Default::default()
                },
                carry: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                streams: Vec::new(),
                seq: SeqTracker::starting_at(1),
                placed: false,
            }
        })
        .collect();
    let mut pubs: Vec<usize> = (0..conns.len())
        .filter(|&s| conns[s].publisher.is_some())
        .collect();
    let t0 = now_ns();
    let share = conns.len() as f64 / layout.sockets().max(1) as f64;
    let mut connects = Schedule::new(t0, u64::MAX, layout.connect_rate * share, 0.0);
    let unlimited = layout.connect_rate <= 0.0;
    let mut next_conn = 0usize;
    let mut connecting = 0u32;
    let mut connect_latency = stats::new_histogram();
    let mut rbuf = vec![0u8; 64 << 10];
    let mut scratch = Vec::with_capacity(4096);
    let mut data = Vec::with_capacity(layout.size + 64);
    let sc = Scanner::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut step = Step {
        plan: StepPlan::default(),
        counts: StepCounts::default(),
        seq_anomalies: 0,
        received: 0,
        expected: 0,
    };
    let mut publishing: Option<Schedule> = None;
    let (mut seen_step, mut seen_collect) = (0u64, 0u64);

    while !ctl.quit.load(Ordering::Relaxed) {
        let g = ctl.step_gen.load(Ordering::Acquire);
        if g != seen_step {
            seen_step = g;
            step.plan = *ctl.plan.lock().expect("plan lock");
            let phase = id as f64 / layout.threads as f64;
            let my_share = if layout.publishers > 0 {
                pubs.len() as f64 / layout.publishers as f64
            } else {
                0.0
            };
            publishing = (!pubs.is_empty()).then(|| {
                Schedule::new(
                    step.plan.start_ns,
                    step.plan.measure_end_ns,
                    step.plan.rate * my_share,
                    phase,
                )
            });
        }
        let g = ctl.collect_gen.load(Ordering::Acquire);
        if g != seen_collect {
            seen_collect = g;
            let counts = std::mem::take(&mut step.counts);
            let report = WorkerReport {
                worker: id,
                counts,
                connect_latency: connect_latency.clone(),
                seq_anomalies: std::mem::take(&mut step.seq_anomalies),
            };
            if tx.send(report).is_err() {
                break;
            }
        }
        let mut now = now_ns();
        // Connects, paced and bounded in flight.
        while next_conn < conns.len() && connecting < layout.max_connecting {
            if !unlimited && connects.pop_due(now).is_none() {
                break;
            }
            let c = &mut conns[next_conn];
            let src = (!layout.sources.is_empty())
                .then(|| layout.sources[c.index as usize % layout.sources.len()]);
            if next_conn == 0 {
                ctl.connect_first_ns.fetch_min(now, Ordering::Relaxed);
            }
            next_conn += 1;
            c.connect_start = now;
            match net::connect_nonblocking(layout.addr_of(c.index), src) {
                Ok(fd) => {
                    c.fd = fd;
                    c.state = State::Connecting;
                    connecting += 1;
                    ep.add(fd, next_conn as u64 - 1).expect("epoll_ctl add");
                }
                Err(_) => {
                    c.state = State::Closed;
                    ctl.connect_errors.fetch_add(1, Ordering::Relaxed);
                    ctl.connect_finished(now);
                }
            }
        }
        // Publishes that are due, each stamped with its scheduled time.
        if let Some(s) = publishing.as_mut() {
            while let Some((k, t)) = s.pop_due(now) {
                let slot = pubs[(k % pubs.len() as u64) as usize];
                publish(
                    &layout,
                    &ctl,
                    wire,
                    &mut conns[slot],
                    t,
                    &mut step,
                    &mut data,
                    &mut scratch,
                );
            }
        }
        let mut deadline = now + 20_000_000;
        if let Some(t) = publishing.as_ref().and_then(Schedule::next_at) {
            deadline = deadline.min(t);
        }
        if !unlimited && next_conn < conns.len() && connecting < layout.max_connecting {
            if let Some(t) = connects.next_at() {
                deadline = deadline.min(t);
            }
        }
        let n = ep.wait(&mut events, deadline.saturating_sub(now));
        now = now_ns();
        for ev in &events[..n] {
            let slot = ev.u64 as usize;
            let flags = ev.events;
            let c = &mut conns[slot];
            let before = c.state;
            if c.state == State::Connecting {
                if flags & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
                    continue;
                }
                if net::take_error(c.fd) != 0 {
                    fail(&ctl, &layout, c, &mut step);
                } else {
                    opened(wire, &layout, c, &mut scratch);
                }
            }
            if c.state != State::Closed && !c.out.is_empty() && flush(c).is_err() {
                fail(&ctl, &layout, c, &mut step);
            }
            if c.state != State::Closed
                && flags
                    & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                    != 0
            {
                if let Err(()) = read_ready(
                    wire,
                    &sc,
                    &layout,
                    &ctl,
                    c,
                    &mut rbuf,
                    &mut scratch,
                    &mut step,
                    now,
                ) {
                    fail(&ctl, &layout, c, &mut step);
                } else if !c.out.is_empty() && flush(c).is_err() {
                    fail(&ctl, &layout, c, &mut step);
                }
            }
            if before != State::Ready && c.state == State::Ready {
                if c.placed && c.publisher.is_some() {
                    pubs.push(slot);
                }
                connecting -= 1;
                stats::record(&mut connect_latency, now - c.connect_start);
                ctl.ready.fetch_add(1, Ordering::Relaxed);
                ctl.connect_finished(now);
                if let Some(r) = c.proto.room {
                    ctl.room_members[r as usize].fetch_add(1, Ordering::Relaxed);
                }
            } else if before != State::Closed && before != State::Ready && c.state == State::Closed
            {
                connecting -= 1;
            }
        }
        if step.received > 0 {
            ctl.received
                .fetch_add(std::mem::take(&mut step.received), Ordering::Relaxed);
        }
        if step.expected > 0 {
            ctl.expected
                .fetch_add(std::mem::take(&mut step.expected), Ordering::Relaxed);
        }
    }
    for c in &conns {
        if c.fd >= 0 {
            net::close(c.fd);
        }
    }
}

/// The transport is up: send the upgrade request, or for RESP the subscribe.
fn opened(wire: Wire, layout: &Layout, c: &mut Conn, scratch: &mut Vec<u8>) {
    match wire {
        Wire::Resp => {
            c.state = State::Joining;
            let (proto, out) = (&mut c.proto, &mut c.out);
            target::on_open(wire, proto, scratch, out);
        }
        _ => {
            c.state = State::Upgrading;
            let path = target_path(wire, layout, c.index);
            let host = layout.addr_of(c.index).to_string();
            wsframe::handshake_request(&mut c.out, &host, &path);
        }
    }
}

/// The upgrade path of socket `index`: with a token in the URL the server
/// takes the user from its `sub` (and ignores `?user=`), so only the token goes.
fn target_path(wire: Wire, layout: &Layout, index: u32) -> String {
    match (wire, layout.tokens.as_deref()) {
        (Wire::JsonWs { .. }, Some(t)) if t.via == TokenVia::Query => {
            format!("/ws?token={}", t.for_socket(index))
        }
        (Wire::JsonWs { .. }, Some(_)) => "/ws".to_string(),
        (Wire::JsonWs { .. }, None) => format!("/ws?user={}", token::user_name(index)),
        (Wire::SocketIo, _) => "/socket.io/?EIO=4&transport=websocket".to_string(),
        _ => "/".to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn publish(
    layout: &Layout,
    ctl: &Control,
    wire: Wire,
    c: &mut Conn,
    sched_ns: u64,
    step: &mut Step,
    data: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    let Some(p) = c.publisher else { return };
    if c.state != State::Ready || c.out.len() - c.out_pos > layout.out_cap {
        step.counts.publish_skipped += 1;
        return;
    }
    let room = p % layout.rooms;
    data.clear();
    scan::write_data(data, p, c.counter, sched_ns, layout.size);
    c.counter += 1;
    let room_no = layout.room_numbers[room as usize];
    target::publish(wire, &mut c.proto, room_no, data, scratch, &mut c.out);
    step.counts.published += 1;
    if sched_ns >= step.plan.measure_start_ns && sched_ns < step.plan.measure_end_ns {
        step.counts.published_in_window += 1;
        let lag = now_ns().saturating_sub(sched_ns);
        step.counts.send_lag_max_ns = step.counts.send_lag_max_ns.max(lag);
    }
    step.expected += ctl.room_members[room as usize].load(Ordering::Relaxed) as u64;
    if flush(c).is_err() {
        // The read side will see the failure and account for it.
        c.out.clear();
        c.out_pos = 0;
    }
}

/// Writes as much pending output as the socket takes.
fn flush(c: &mut Conn) -> Result<(), ()> {
    while c.out_pos < c.out.len() {
        match net::write(c.fd, &c.out[c.out_pos..]) {
            Ok(0) => return Err(()),
            Ok(n) => c.out_pos += n,
            Err(e) if e == libc::EAGAIN => break,
            Err(e) if e == libc::EINTR => continue,
            Err(_) => return Err(()),
        }
    }
    if c.out_pos == c.out.len() {
        c.out.clear();
        c.out_pos = 0;
    } else if c.out_pos > (64 << 10) && c.out_pos * 2 > c.out.len() {
        c.out.drain(..c.out_pos);
        c.out_pos = 0;
    }
    Ok(())
}

/// Reads until the socket is drained, feeding whole units to the protocol.
#[allow(clippy::too_many_arguments)]
fn read_ready(
    wire: Wire,
    sc: &Scanner,
    layout: &Layout,
    ctl: &Control,
    c: &mut Conn,
    rbuf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    step: &mut Step,
    now: u64,
) -> Result<(), ()> {
    loop {
        let carry = c.carry.len();
        if carry + (16 << 10) > rbuf.len() {
            if carry > wsframe::MAX_FRAME + 16 {
                return Err(());
            }
            rbuf.resize((carry + (16 << 10)).next_power_of_two(), 0);
        }
        rbuf[..carry].copy_from_slice(&c.carry);
        c.carry.clear();
        let room = rbuf.len() - carry;
        let n = match net::read(c.fd, &mut rbuf[carry..]) {
            Ok(0) => return Err(()),
            Ok(n) => n,
            Err(e) if e == libc::EAGAIN => {
                c.carry.extend_from_slice(&rbuf[..carry]);
                return Ok(());
            }
            Err(e) if e == libc::EINTR => {
                c.carry.extend_from_slice(&rbuf[..carry]);
                continue;
            }
            Err(_) => return Err(()),
        };
        step.counts.reads += 1;
        let total = carry + n;
        let used = consume(wire, sc, layout, ctl, c, &rbuf[..total], scratch, step, now)?;
        c.carry.extend_from_slice(&rbuf[used..total]);
        if n < room {
            // A short read drained the socket; new data raises a new edge.
            return Ok(());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn consume(
    wire: Wire,
    sc: &Scanner,
    layout: &Layout,
    ctl: &Control,
    c: &mut Conn,
    buf: &[u8],
    scratch: &mut Vec<u8>,
    step: &mut Step,
    now: u64,
) -> Result<usize, ()> {
    let mut at = 0;
    if c.state == State::Upgrading {
        match wsframe::check_handshake(buf) {
            Handshake::Partial => return Ok(0),
            Handshake::Refused => return Err(()),
            Handshake::Done(n) => {
                at = n;
                c.state = State::Joining;
                if let Some(t) = layout
                    .tokens
                    .as_deref()
                    .filter(|t| t.via == TokenVia::Frame)
                {
                    target::auth(&mut c.proto, t.for_socket(c.index), scratch, &mut c.out);
                }
                target::on_open(wire, &mut c.proto, scratch, &mut c.out);
                if target::ready_on_open(wire, &c.proto) {
                    c.state = State::Ready;
                }
            }
        }
    }
    let mut sink = Recv {
        now,
        rooms: layout.rooms,
        step,
        streams: &mut c.streams,
        seq: &mut c.seq,
        joined: None,
        welcome: None,
    };
    let used = match target::feed(wire, &mut c.proto, sc, &buf[at..], &mut c.out, &mut sink) {
        Ok(n) => n,
        Err(ProtoError::Closed) | Err(ProtoError::Invalid) => return Err(()),
    };
    if let (Some(shard), true) = (sink.welcome, c.proto.defer_join) {
        c.proto.defer_join = false;
        let k = ctl.shard_slots[(shard as usize).min(ctl.shard_slots.len() - 1)]
            .fetch_add(1, Ordering::Relaxed);
        match layout.local_slot(shard, k) {
            Some((room, publisher)) => {
                c.proto.room = Some(room);
                c.proto.room_no = layout.room_numbers[room as usize];
                c.publisher = publisher;
                c.placed = true;
                target::on_open(wire, &mut c.proto, scratch, &mut c.out);
            }
            None => {
                // This shard's rooms are full: the socket stays, idle.
                ctl.unplaced.fetch_add(1, Ordering::Relaxed);
                c.state = State::Ready;
            }
        }
    }
    if sink.welcome.is_some()
        && c.proto.await_welcome
        && c.state == State::Joining
        && c.proto.room.is_none()
        && !c.proto.defer_join
        && !c.placed
    {
        // Nothing to join: the welcome (the token held) makes it ready.
        c.state = State::Ready;
    }
    if let Some(seq) = sink.joined {
        if c.state == State::Joining {
            c.state = State::Ready;
            c.seq = SeqTracker::starting_at(seq.map_or(1, |s| s + 1));
        }
    }
    Ok(at + used)
}

fn fail(ctl: &Control, _layout: &Layout, c: &mut Conn, step: &mut Step) {
    if c.fd >= 0 {
        net::close(c.fd);
        c.fd = -1;
    }
    match c.state {
        State::Ready => {
            step.counts.disconnects += 1;
            ctl.ready.fetch_sub(1, Ordering::Relaxed);
            if let Some(r) = c.proto.room {
                ctl.room_members[r as usize].fetch_sub(1, Ordering::Relaxed);
            }
        }
        State::Closed => {}
        _ => {
            ctl.connect_errors.fetch_add(1, Ordering::Relaxed);
            ctl.connect_finished(now_ns());
        }
    }
    c.state = State::Closed;
    c.out.clear();
    c.out_pos = 0;
    c.carry = Vec::new();
}
