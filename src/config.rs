//! Configuration: a TOML file and command-line flags with the same names.
//!
//! Every key is bounded by default so that a laptop run is safe; flags
//! override the file, the file overrides the defaults. Unknown keys in the
//! file are an error, so a typo never silently falls back to a default.
//!
//! Each key is written once, in a [`settings!`] list: its type, default,
//! flag and the doc comment that is both its `--help` text and its
//! documentation. The list makes the TOML struct, its defaults, the flags
//! and the merge of the two.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Declares a table of settings: the struct read from TOML (unknown keys
/// refused, missing keys defaulted), its `Default`, a `clap` struct with
/// one optional flag per key, and `apply` to lay the flags given over a
/// value. `KEYS` lists the keys as a file spells them.
macro_rules! settings {
    (
        $(#[$smeta:meta])*
        pub struct $name:ident, flags $flags:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr, flag $flag:ident $([$($arg:tt)*])?;
            )*
        }
    ) => {
        $(#[$smeta])*
        #[derive(Clone, Debug, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        #[doc = concat!("Flags for [`", stringify!($name), "`]; each overrides its key.")]
        #[derive(Clone, Debug, Default, clap::Args)]
        pub struct $flags {
            $( $(#[doc = $doc])* #[arg(long $(, $($arg)*)?)] pub $flag: Option<$ty>, )*
        }

        impl $flags {
            /// Lays the flags that were given over `cfg`.
            pub fn apply(&self, cfg: &mut $name) {
                $( if let Some(v) = &self.$flag { cfg.$field = v.clone(); } )*
            }
        }

        impl $name {
            /// The keys, as a config file spells them.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

settings! {
    /// The server's settings, after the file and the flags are merged.
    pub struct Config, flags ConfigFlags {
        /// Number of shards (threads, one per core); 0 = one per available core.
        shards: usize = 0, flag shards [value_name = "N"];
        /// Cores to pin shards to, e.g. `[0, 1]` (flag: 0,1); empty = all cores.
        cores: Vec<usize> = Vec::new(), flag cores [value_name = "LIST", value_delimiter = ','];
        /// WebSocket listen address (port 0 picks a free port, logged).
        ws: SocketAddr = addr("0.0.0.0:8080"), flag ws [value_name = "ADDR"];
        /// RESP (Redis pub/sub) listen address.
        resp: SocketAddr = addr("0.0.0.0:6380"), flag resp [value_name = "ADDR"];
        /// Admin HTTP listen address (`/stats`, `/metrics`, `/healthz`).
        admin: SocketAddr = addr("127.0.0.1:9100"), flag admin [value_name = "ADDR"];
        /// Messages retained per room for `since` recovery and `history`.
        history: usize = 256, flag history [value_name = "N"];
        /// Bytes of retained messages one shard keeps across the rooms homed
        /// on it; past it, rooms without members are dropped, oldest idle first.
        retained_bytes: usize = 256 * 1024 * 1024, flag retained_bytes [value_name = "BYTES"];
        /// Largest message payload (the `data` of a publish), in bytes.
        max_payload: usize = 64 * 1024, flag max_payload [value_name = "BYTES"];
        /// Rooms one connection may be in at once.
        max_rooms_per_conn: usize = 1024, flag max_rooms_per_conn [value_name = "N"];
        /// Members one room may have (0 = unlimited).
        max_members_per_room: usize = 0, flag max_members_per_room [value_name = "N"];
        /// Bytes queued towards one connection before it is closed as a slow
        /// consumer. Bounds server memory per connection under any load.
        outbound_limit: usize = 1024 * 1024, flag outbound_limit [value_name = "BYTES"];
        /// Presence frames leave a room at most once per this many ms; events
        /// in between are batched (0 = every event at once).
        presence_interval_ms: u64 = 100, flag presence_interval_ms [value_name = "MS"];
        /// Serve the `/echo` conformance endpoint (off: it answers 404).
        echo: bool = false, flag echo [num_args = 0..=1, default_missing_value = "true", value_name = "BOOL"];
        /// Largest message accepted on the `/echo` conformance endpoint.
        echo_max_message: usize = 16 * 1024 * 1024, flag echo_max_message [value_name = "BYTES"];
        /// Connections the whole server holds at once; more are refused at
        /// accept (0 = as many as file descriptors allow: past that, accept
        /// backs off and existing connections keep being served).
        max_connections: usize = 0, flag max_connections [value_name = "N"];
        /// Connections one client address holds at once (IPv6: per /64);
        /// 0 = no limit (behind a load balancer every client has its address).
        max_connections_per_ip: usize = 0, flag max_connections_per_ip [value_name = "N"];
        /// Bytes of a RESP request buffered before it is complete; past it
        /// the client gets a protocol error and is closed.
        resp_query_buffer_limit: usize = 1024 * 1024, flag resp_query_buffer_limit [value_name = "BYTES"];
        /// How long a client may take to finish its WebSocket upgrade request.
        handshake_timeout_ms: u64 = 10_000, flag handshake_timeout_ms [value_name = "MS"];
        /// A WebSocket connection that has sent nothing for this long is
        /// pinged (0 = never ping).
        ping_interval_ms: u64 = 25_000, flag ping_interval_ms [value_name = "MS"];
        /// A pinged WebSocket connection that sends nothing for this long
        /// after the ping is closed.
        ping_timeout_ms: u64 = 20_000, flag ping_timeout_ms [value_name = "MS"];
        /// A RESP connection not subscribed to anything that sends nothing
        /// for this long is closed (0 = never, as Redis's `timeout 0`).
        resp_idle_timeout_ms: u64 = 0, flag resp_idle_timeout_ms [value_name = "MS"];
        /// TCP keepalive on accepted sockets: idle seconds before the first
        /// probe (then every 10 s, 6 probes); 0 = off.
        tcp_keepalive_s: u64 = 60, flag tcp_keepalive_s [value_name = "S"];
        /// TCP_USER_TIMEOUT on accepted sockets: how long sent data may go
        /// unacknowledged before the kernel drops the connection; 0 = the
        /// kernel's default.
        tcp_user_timeout_ms: u64 = 60_000, flag tcp_user_timeout_ms [value_name = "MS"];
        /// How long a graceful shutdown may spend flushing queues, in ms.
        shutdown_timeout_ms: u64 = 5000, flag shutdown_timeout_ms [value_name = "MS"];
        /// Capacity of each shard-to-shard ring, in frames.
        ring_capacity: usize = 8192, flag ring_capacity [value_name = "N"];
        /// Frames a shard may hold back for full rings before it says it is
        /// congested and every shard stops reading client requests.
        congestion_held_frames: usize = 16 * 1024, flag congestion_held_frames [value_name = "N"];
        /// Use epoll even where io_uring works (for comparisons).
        force_epoll: bool = false, flag force_epoll [num_args = 0..=1, default_missing_value = "true", value_name = "BOOL"];
        /// Log filter, e.g. `info` or `ringcast=debug`.
        log: String = "info".into(), flag log [value_name = "FILTER"];
    }
}

/// The flags of `ringcast serve`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (keys as the flags, with underscores).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The settings given as flags.
    #[command(flatten)]
    pub flags: ConfigFlags,
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
        args.flags.apply(&mut cfg);
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
        anyhow::ensure!(
            self.resp_query_buffer_limit >= self.max_payload + 64 * 1024,
            "resp_query_buffer_limit must be at least max_payload + 65536 = {} bytes, so that any PUBLISH fits",
            self.max_payload + 64 * 1024
        );
        anyhow::ensure!(
            self.handshake_timeout_ms >= 1,
            "handshake_timeout_ms must be ≥ 1"
        );
        anyhow::ensure!(
            self.ping_interval_ms == 0 || self.ping_timeout_ms >= 1,
            "ping_timeout_ms must be ≥ 1 when pings are on"
        );
        anyhow::ensure!(
            self.congestion_held_frames >= 1,
            "congestion_held_frames must be ≥ 1"
        );
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
            flags: ConfigFlags {
                history: Some(20),
                ..Default::default()
            },
        };
        let cfg = Config::load(&args).unwrap();
        assert_eq!((cfg.shards, cfg.history), (3, 20));
    }

    #[test]
    fn every_key_is_a_flag() {
        use clap::{Args, Command};
        let cmd = ConfigFlags::augment_args(Command::new("serve"));
        for key in Config::KEYS {
            let flag = key.replace('_', "-");
            assert!(
                cmd.get_arguments()
                    .any(|a| a.get_long() == Some(flag.as_str())),
                "no --{flag}"
            );
        }
    }

    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../docs/configuration.md");
        for key in Config::KEYS {
            assert!(
                doc.contains(&format!("`{key}`")),
                "docs/configuration.md lacks `{key}`"
            );
        }
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
