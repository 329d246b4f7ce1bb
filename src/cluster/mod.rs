//! Cluster mode's side of Redis: how a shard talks to it and what it keeps
//! there. Plain parts, no shard state; the shard's `relay` role uses them.
//!
//! # Layout
//! - [`target`]: `cluster.redis` parsed.
//! - [`link`]: one connection, pipelined, reconnecting with backoff; a
//!   shard has a command link and a subscriber link.
//! - [`scripts`]: the Lua that sequences, stores and publishes a message,
//!   reads a room's position and backlog, and keeps its members.
//! - [`keys`]: a room's keys and channel, all under one hash tag.
//! - [`frame`]: what goes on a room's channel.
//! - [`commands`]: the script calls, written into a link's buffer;
//!   [`answers`]: their replies read back.
//! - [`probe`]: does Redis answer (start-up log, `ringcast doctor`).
//!
//! See docs/cluster.md for what the mode guarantees.

pub mod answers;
pub mod commands;
pub mod frame;
pub mod keys;
pub mod link;
pub mod probe;
pub mod scripts;
pub mod target;

/// This process's id in the cluster: random at every start, so a node that
/// restarts never inherits the leases of its earlier life.
pub fn new_node_id() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

/// This node's part in the cluster, shared by its shards.
#[derive(Debug)]
pub struct Node {
    /// Random at every start ([`new_node_id`]).
    pub id: u64,
    /// `cluster.node_name`, or the host name and process id.
    pub name: String,
    /// The cluster's Redis.
    pub target: target::Target,
    /// `[cluster]`.
    pub cfg: crate::config::ClusterConfig,
}

impl Node {
    /// The node `cfg` describes, or `None` without `cluster.redis`.
    pub fn new(cfg: &crate::config::ClusterConfig) -> anyhow::Result<Option<Self>> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let name = if cfg.node_name.is_empty() {
            format!("{}-{}", host_name(), std::process::id())
        } else {
            cfg.node_name.clone()
        };
        anyhow::ensure!(
            name.bytes().all(|b| b.is_ascii_graphic()),
            "cluster.node_name must be printable ASCII without spaces"
        );
        Ok(Some(Self {
            id: new_node_id(),
            name,
            target: target::Target::parse(&cfg.redis)?,
            cfg: cfg.clone(),
        }))
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    let name = String::from_utf8_lossy(&buf[..end]).replace(|c: char| !c.is_ascii_graphic(), "-");
    if ok && !name.is_empty() {
        name
    } else {
        "node".to_owned()
    }
}
