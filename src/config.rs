//! Configuration: a TOML file and command-line flags with the same names.
//!
//! Every key is bounded by default so that a laptop run is safe; flags
//! override the file, the file overrides the defaults. Unknown keys in the
//! file are an error, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The server's settings, after the file and the flags are merged.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Number of shards (threads, one per core); 0 = one per available core.
    pub shards: usize,
    /// Cores to pin shards to, e.g. `[0, 1]`; empty = all cores.
    pub cores: Vec<usize>,
    /// WebSocket listen address.
    pub ws: SocketAddr,
    /// RESP (Redis pub/sub) listen address.
    pub resp: SocketAddr,
    /// Admin HTTP listen address (`/stats`, `/metrics`, `/healthz`).
    pub admin: SocketAddr,
    /// Messages retained per room for `since` recovery and `history`.
    pub history: usize,
    /// Bytes of retained messages one shard keeps across the rooms homed on
    /// it; past it, rooms without members are dropped, oldest idle first.
    pub retained_bytes: usize,
    /// Largest message payload (the `data` of a publish), in bytes.
    pub max_payload: usize,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_conn: usize,
    /// Members one room may have (0 = unlimited).
    pub max_members_per_room: usize,
    /// Bytes queued towards one connection before it is closed as a slow
    /// consumer. Bounds server memory per connection under any load.
    pub outbound_limit: usize,
    /// Presence frames leave a room at most once per this many ms; events
    /// in between are batched (0 = every event at once).
    pub presence_interval_ms: u64,
    /// Largest message accepted on the `/echo` conformance endpoint.
    pub echo_max_message: usize,
    /// How long a graceful shutdown may spend flushing queues, in ms.
    pub shutdown_timeout_ms: u64,
    /// Capacity of each shard-to-shard ring, in frames.
    pub ring_capacity: usize,
    /// Use epoll even where io_uring works (for comparisons).
    pub force_epoll: bool,
    /// Log filter, e.g. `info` or `ringcast=debug`.
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            shards: 0,
            cores: Vec::new(),
            ws: "0.0.0.0:8080".parse().expect("literal"),
            resp: "0.0.0.0:6380".parse().expect("literal"),
            admin: "127.0.0.1:9100".parse().expect("literal"),
            history: 256,
            retained_bytes: 256 * 1024 * 1024,
            max_payload: 64 * 1024,
            max_rooms_per_conn: 1024,
            max_members_per_room: 0,
            outbound_limit: 1024 * 1024,
            presence_interval_ms: 100,
            echo_max_message: 16 * 1024 * 1024,
            shutdown_timeout_ms: 5000,
            ring_capacity: 8192,
            force_epoll: false,
            log: "info".into(),
        }
    }
}

/// Flags of `ringcast serve`; each overrides the key of the same name.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (keys as the flags, with underscores).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Number of shards; 0 = one per available core.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Cores to pin shards to, comma-separated (e.g. 0,1).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub cores: Option<Vec<usize>>,
    /// WebSocket listen address (port 0 picks a free port, logged).
    #[arg(long, value_name = "ADDR")]
    pub ws: Option<SocketAddr>,
    /// RESP listen address.
    #[arg(long, value_name = "ADDR")]
    pub resp: Option<SocketAddr>,
    /// Admin HTTP listen address.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Messages retained per room.
    #[arg(long, value_name = "N")]
    pub history: Option<usize>,
    /// Retained-message bytes per shard before memberless rooms are dropped.
    #[arg(long, value_name = "BYTES")]
    pub retained_bytes: Option<usize>,
    /// Largest message payload in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_payload: Option<usize>,
    /// Rooms per connection.
    #[arg(long, value_name = "N")]
    pub max_rooms_per_conn: Option<usize>,
    /// Members per room (0 = unlimited).
    #[arg(long, value_name = "N")]
    pub max_members_per_room: Option<usize>,
    /// Outbound queue bound per connection, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub outbound_limit: Option<usize>,
    /// Least time between a room's presence frames, in ms (0 = no batching).
    #[arg(long, value_name = "MS")]
    pub presence_interval_ms: Option<u64>,
    /// Largest message on the /echo endpoint, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub echo_max_message: Option<usize>,
    /// Graceful-shutdown flush deadline in milliseconds.
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Shard-to-shard ring capacity in frames.
    #[arg(long, value_name = "N")]
    pub ring_capacity: Option<usize>,
    /// Use epoll even where io_uring works.
    #[arg(long)]
    pub force_epoll: bool,
    /// Log filter (e.g. info, debug, ringcast=trace).
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in config {}", path.display()))
    }

    /// Defaults, then the file named by `--config`, then the flags.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Self> {
        let mut cfg = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = args.$f.clone() { cfg.$f = v; } )* };
        }
        set!(
            shards,
            cores,
            ws,
            resp,
            admin,
            history,
            retained_bytes,
            max_payload,
            max_rooms_per_conn,
            max_members_per_room,
            outbound_limit,
            presence_interval_ms,
            echo_max_message,
            shutdown_timeout_ms,
            ring_capacity,
            log
        );
        cfg.force_epoll |= args.force_epoll;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects settings that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.history <= 1 << 20, "history must be at most 1048576");
        anyhow::ensure!(
            (1..=(64 << 20)).contains(&self.max_payload),
            "max_payload must be 1..=64 MiB"
        );
        anyhow::ensure!(
            self.max_rooms_per_conn >= 1,
            "max_rooms_per_conn must be ≥ 1"
        );
        anyhow::ensure!(
            self.outbound_limit >= 2 * (self.max_payload + 4096),
            "outbound_limit must be at least 2 × (max_payload + 4096) = {} bytes, so that any one message and any reply fit",
            2 * (self.max_payload + 4096)
        );
        anyhow::ensure!(self.ring_capacity >= 16, "ring_capacity must be ≥ 16");
        anyhow::ensure!(
            self.presence_interval_ms <= 60_000,
            "presence_interval_ms must be at most 60000"
        );
        anyhow::ensure!(self.shards <= 1024, "shards must be at most 1024");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_an_error() {
        let err = Config::from_toml("shards = 2\nhistroy = 5\n").unwrap_err();
        assert!(err.to_string().contains("histroy"), "{err}");
    }

    #[test]
    fn file_keys_and_flags_merge() {
        let cfg = Config::from_toml("shards = 3\nws = \"127.0.0.1:0\"\n").unwrap();
        assert_eq!(cfg.shards, 3);
        assert_eq!(cfg.history, 256);
        let dir = std::env::temp_dir().join(format!("ringcast-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.toml");
        std::fs::write(&path, "shards = 3\nhistory = 10\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            history: Some(20),
            ..Default::default()
        };
        let cfg = Config::load(&args).unwrap();
        assert_eq!((cfg.shards, cfg.history), (3, 20));
    }

    #[test]
    fn nonsense_is_rejected() {
        let cfg = Config {
            outbound_limit: 1,
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
    }
}
