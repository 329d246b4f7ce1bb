//! Starting the shards: one pinned OS thread and one monoio runtime each.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use crate::mesh::{self, Inbox, Outbox, Wake};
use crate::probe::{self, Driver};

/// How to start the shards.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Number of shards; 0 means one per available core.
    pub shards: usize,
    /// Capacity of each SPSC ring, in frames.
    pub ring_capacity: usize,
    /// Cores to pin to (shard `i` gets `cores[i % len]`); empty means all
    /// cores the process may run on.
    pub cores: Vec<usize>,
    /// Pin shard threads to cores at all.
    pub pin: bool,
    /// io_uring submission queue size per shard.
    pub uring_entries: u32,
    /// Use epoll even when io_uring works (for comparison runs).
    pub force_epoll: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            shards: 0,
            ring_capacity: 4096,
            cores: Vec::new(),
            pin: true,
            uring_entries: 1024,
            force_epoll: false,
        }
    }
}

impl Config {
    /// Sets the number of shards (0: one per core).
    #[must_use]
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// Sets the cores shards are pinned to.
    #[must_use]
    pub fn cores(mut self, cores: Vec<usize>) -> Self {
        self.cores = cores;
        self
    }

    /// Sets the ring capacity in frames.
    #[must_use]
    pub fn ring_capacity(mut self, n: usize) -> Self {
        self.ring_capacity = n.max(2);
        self
    }

    /// Forces the epoll driver.
    #[must_use]
    pub fn force_epoll(mut self, yes: bool) -> Self {
        self.force_epoll = yes;
        self
    }

    /// The shard count this config resolves to on this host.
    pub fn resolved_shards(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// What one shard is given when it starts.
pub struct Shard {
    /// This shard's id, `0..count`.
    pub id: usize,
    /// Number of shards.
    pub count: usize,
    /// The core this shard's thread is pinned to, if pinned.
    pub core: Option<usize>,
    /// The I/O driver it runs on.
    pub driver: Driver,
    /// Frames from other shards.
    pub inbox: Inbox,
    /// Frames to other shards.
    pub outbox: Outbox,
}

/// Kept by the caller to stop and join the shards.
pub struct Handle {
    wakes: Vec<Arc<Wake>>,
    threads: Vec<JoinHandle<()>>,
    /// The driver every shard runs on.
    pub driver: Driver,
    /// Why io_uring is not used, when it is not.
    pub fallback_reason: Option<String>,
}

impl Handle {
    /// Asks every shard to stop: each sees [`Inbox::stop_requested`] and its
    /// [`Inbox::ready`] returns. Shards decide how to wind down.
    pub fn stop(&self) {
        for wake in &self.wakes {
            wake.request_stop();
        }
    }

    /// Waits for every shard thread to end. Returns false if one panicked.
    pub fn join(self) -> bool {
        // Join every thread, even after one failed.
        let mut all_ok = true;
        for thread in self.threads {
            all_ok &= thread.join().is_ok();
        }
        all_ok
    }

    /// Number of shards started.
    pub fn shards(&self) -> usize {
        self.wakes.len()
    }
}

/// Starts the shards. `make(shard)` runs on each shard's own thread, inside
/// its runtime, and the shard ends when the future it returns does.
pub fn launch<F, Fut>(cfg: &Config, make: F) -> io::Result<Handle>
where
    F: Fn(Shard) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let n = cfg.resolved_shards();
    let (driver, fallback_reason) = if cfg.force_epoll {
        (Driver::Epoll, Some("epoll forced by configuration".into()))
    } else {
        probe::probe(cfg.uring_entries)
    };
    let cores: Vec<usize> = if !cfg.pin {
        Vec::new()
    } else if cfg.cores.is_empty() {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect()
    } else {
        cfg.cores.clone()
    };
    let (outboxes, inboxes, wakes) = mesh::build(n, cfg.ring_capacity);
    let make = Arc::new(make);
    let entries = cfg.uring_entries;
    let mut threads = Vec::with_capacity(n);
    for (id, (outbox, inbox)) in outboxes.into_iter().zip(inboxes).enumerate() {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let make = make.clone();
        let thread = std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!(shard = id, core, "could not pin shard to core");
                    }
                }
                let shard = Shard {
                    id,
                    count: n,
                    core,
                    driver,
                    inbox,
                    outbox,
                };
                run(driver, entries, make(shard));
            })?;
        threads.push(thread);
    }
    Ok(Handle {
        wakes,
        threads,
        driver,
        fallback_reason,
    })
}

fn run<Fut: Future<Output = ()>>(driver: Driver, entries: u32, fut: Fut) {
    match driver {
        Driver::IoUring => {
            // A completion that arrives while the shard runs (a poll woken
            // by a peer on another core) waits for the shard's next system
            // call instead of interrupting it with an IPI; a shard that
            // sleeps in the ring is still woken. Kernels before 5.19 refuse
            // the flag: then the ring is made without it.
            let mut coop = io_uring::IoUring::builder();
            coop.setup_coop_taskrun();
            let runtime = |urb: Option<io_uring::Builder>| {
                let b = RuntimeBuilder::<IoUringDriver>::new().with_entries(entries);
                match urb {
                    Some(urb) => b.uring_builder(urb),
                    None => b,
                }
                .enable_timer()
                .build()
            };
            runtime(Some(coop))
                .or_else(|_| runtime(None))
                .expect("io_uring runtime (probed at start-up)")
                .block_on(fut)
        }
        Driver::Epoll => RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("epoll runtime")
            .block_on(fut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::mpsc;

    /// Two real shards on their own threads pass a counter back and forth
    /// through the rings, sleeping between frames; every frame must arrive
    /// and the shards must stop when asked.
    fn ping_pong(force_epoll: bool) {
        const ROUNDS: u64 = 2_000;
        let (done_tx, done_rx) = mpsc::channel::<(usize, u64)>();
        let cfg = Config::default()
            .shards(2)
            .ring_capacity(4)
            .force_epoll(force_epoll);
        let handle = launch(&cfg, move |shard: Shard| {
            let done = done_tx.clone();
            async move {
                let other = 1 - shard.id;
                let mut last = 0u64;
                if shard.id == 0 {
                    shard
                        .outbox
                        .send(other, Bytes::from(1u64.to_le_bytes().to_vec()))
                        .unwrap();
                }
                loop {
                    shard.inbox.ready().await;
                    if shard.inbox.stop_requested() {
                        break;
                    }
                    let mut got = Vec::new();
                    shard.inbox.drain(64, |_, f| got.push(f));
                    for f in got {
                        let v = u64::from_le_bytes(f[..8].try_into().unwrap());
                        let want = if last == 0 {
                            2 - shard.id as u64
                        } else {
                            last + 2
                        };
                        assert_eq!(v, want);
                        last = v;
                        if v >= ROUNDS {
                            done.send((shard.id, v)).unwrap();
                        }
                        let next = Bytes::from((v + 1).to_le_bytes().to_vec());
                        let _ = shard.outbox.send(other, next);
                    }
                }
            }
        })
        .unwrap();
        // A shard that panics drops its sender; a lost wake-up leaves it asleep.
        // Either way the channel says so instead of hanging the test run.
        let (_, v) = done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a shard stalled or panicked");
        assert!(v >= ROUNDS);
        handle.stop();
        assert!(handle.join());
    }

    #[test]
    fn ping_pong_io_uring_or_fallback() {
        ping_pong(false);
    }

    #[test]
    fn ping_pong_epoll() {
        ping_pong(true);
    }
}
