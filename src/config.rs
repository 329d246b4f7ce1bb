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
        $(tables {
            $( $(#[doc = $tdoc:literal])* $table:ident : $tty:ident, flags $tflags:ident; )*
        })?
    ) => {
        $(#[$smeta])*
        #[derive(Clone, Debug, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            $($( $(#[doc = $tdoc])* pub $table: $tty, )*)?
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $( $field: $default, )*
                    $($( $table: $tty::default(), )*)?
                }
            }
        }

        #[doc = concat!("Flags for [`", stringify!($name), "`]; each overrides its key.")]
        #[derive(Clone, Debug, Default, clap::Args)]
        pub struct $flags {
            $( $(#[doc = $doc])* #[arg(long $(, $($arg)*)?)] pub $flag: Option<$ty>, )*
            $($( #[allow(missing_docs)] #[command(flatten)] pub $table: $tflags, )*)?
        }

        impl $flags {
            /// Lays the flags that were given over `cfg`.
            pub fn apply(&self, cfg: &mut $name) {
                $( if let Some(v) = &self.$flag { cfg.$field = v.clone(); } )*
                $($( self.$table.apply(&mut cfg.$table); )*)?
            }
        }

        impl $name {
            /// The keys, as a config file spells them.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
            /// The tables, each with its keys (`[auth]` → `mode`, …).
            pub const TABLES: &'static [(&'static str, &'static [&'static str])] =
                &[$($( (stringify!($table), $tty::KEYS), )*)?];
        }
    };
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

/// Who a client must prove to be (`auth.mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone: the user name is what the client says (`?user=`). For a
    /// laptop or a trusted network.
    #[default]
    None,
    /// A JSON Web Token, verified with the configured keys, before anything
    /// else; its `sub` is the user.
    Jwt,
}

/// A RESP user (`[[resp_users]]`): a name, the SHA-256 of its password
/// (hex, as Redis ACL's `#<hash>`), and the channel patterns it may
/// subscribe to and publish into (exact names or a trailing `*`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RespUser {
    /// The user name (`AUTH name password`).
    pub name: String,
    /// SHA-256 of the password, 64 hex digits.
    pub password_sha256: String,
    /// Channels it may SUBSCRIBE to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Channels it may PUBLISH into.
    #[serde(default)]
    pub publish: Vec<String>,
}

impl std::str::FromStr for RespUser {
    type Err = String;

    /// `NAME/SHA256/SUB1,SUB2/PUB1,PUB2` (the lists may be empty; `/` is
    /// in no room name, `:` is in many).
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let [name, hash, sub, publ] = parts[..] else {
            return Err(
                "a RESP user is NAME/SHA256/SUBSCRIBE/PUBLISH (patterns comma-separated)".into(),
            );
        };
        let list = |l: &str| {
            l.split(',')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        };
        Ok(RespUser {
            name: name.into(),
            password_sha256: hash.into(),
            subscribe: list(sub),
            publish: list(publ),
        })
    }
}

settings! {
    /// `[auth]`: how WebSocket clients prove who they are.
    pub struct AuthConfig, flags AuthFlags {
        /// `none` (the user is what the client says) or `jwt` (a token first).
        mode: AuthMode = AuthMode::None, flag auth_mode [value_name = "MODE"];
        /// The HMAC secret for HS256/384/512 tokens.
        hmac_secret: String = String::new(), flag auth_hmac_secret [value_name = "SECRET"];
        /// A file holding the HMAC secret (trailing newline ignored).
        hmac_secret_file: String = String::new(), flag auth_hmac_secret_file [value_name = "FILE"];
        /// A PEM public key for RS*/PS*/ES*/EdDSA tokens.
        public_key_file: String = String::new(), flag auth_public_key_file [value_name = "FILE"];
        /// A JWK Set file; a token's `kid` picks its key.
        jwks_file: String = String::new(), flag auth_jwks_file [value_name = "FILE"];
        /// The token algorithms accepted (e.g. `["ES256"]`); empty = HS256
        /// with an HMAC secret. `none` is never accepted.
        algorithms: Vec<String> = Vec::new(), flag auth_algorithms [value_name = "LIST", value_delimiter = ','];
        /// The `iss` tokens must carry (empty = not checked).
        issuer: String = String::new(), flag auth_issuer [value_name = "ISS"];
        /// The `aud` tokens must carry (empty = not checked).
        audience: String = String::new(), flag auth_audience [value_name = "AUD"];
        /// Clock skew allowed on `exp` and `nbf`, in seconds.
        leeway_s: u64 = 30, flag auth_leeway_s [value_name = "S"];
        /// Refuse tokens without `exp`.
        require_exp: bool = true, flag auth_require_exp [num_args = 0..=1, default_missing_value = "true", value_name = "BOOL"];
        /// How long a client has to send its token after connecting, in ms.
        timeout_ms: u64 = 5000, flag auth_timeout_ms [value_name = "MS"];
    }
}

settings! {
    /// `[cluster]`: many nodes sharing rooms through one Redis.
    pub struct ClusterConfig, flags ClusterFlags {
        /// `redis://[user:password@]host:port[/db]` of the Redis the nodes
        /// share; empty = a single node, no Redis anywhere.
        redis: String = String::new(), flag cluster_redis [value_name = "URL"];
        /// The cluster's name: every key and channel starts with it, so
        /// clusters can share a Redis.
        prefix: String = "ringcast".into(), flag cluster_prefix [value_name = "NAME"];
        /// This node's name in logs and Redis client names (empty = the
        /// host name and process id).
        node_name: String = String::new(), flag cluster_node_name [value_name = "NAME"];
        /// A room's history in Redis expires this long after its last
        /// message, in seconds (0 = never).
        history_ttl_s: u64 = 86_400, flag cluster_history_ttl_s [value_name = "S"];
        /// A room's sequence (epoch and last seq) expires this long after
        /// its last message or join, in seconds (0 = never); at least
        /// `history_ttl_s`.
        meta_ttl_s: u64 = 7 * 86_400, flag cluster_meta_ttl_s [value_name = "S"];
        /// A node's members of a room are dropped from the cluster's
        /// member lists this long after the node was last heard from (its
        /// heartbeat comes every third of it), in ms.
        presence_ttl_ms: u64 = 15_000, flag cluster_presence_ttl_ms [value_name = "MS"];
        /// How often each active room's position in Redis is compared with
        /// what this node delivered, to find losses no later message shows
        /// (ms; rooms that got a message since the last check are skipped).
        position_check_ms: u64 = 5_000, flag cluster_position_check_ms [value_name = "MS"];
        /// Connecting to Redis gives up after this long, in ms; then it is
        /// retried with backoff (at most `reconnect_max_ms` apart).
        connect_timeout_ms: u64 = 2_000, flag cluster_connect_timeout_ms [value_name = "MS"];
        /// The longest wait between reconnect attempts, in ms.
        reconnect_max_ms: u64 = 5_000, flag cluster_reconnect_max_ms [value_name = "MS"];
    }
}

settings! {
    /// `[limits]`: how fast one WebSocket client may act, and how big.
    pub struct LimitsConfig, flags LimitsFlags {
        /// Publishes and typing events per second one WebSocket connection
        /// may send, sustained (0 = no limit).
        publish_rate: u32 = 20, flag limits_publish_rate [value_name = "N"];
        /// Of those, how many may come at once.
        publish_burst: u32 = 40, flag limits_publish_burst [value_name = "N"];
        /// Joins and leaves per second one WebSocket connection may send,
        /// sustained (0 = no limit).
        join_rate: u32 = 10, flag limits_join_rate [value_name = "N"];
        /// Of those, how many may come at once.
        join_burst: u32 = 100, flag limits_join_burst [value_name = "N"];
        /// A connection refused by a rate limit at least once a second (what
        /// passes between does not matter) for this long is closed (4029);
        /// a second without a refusal starts the count again. 0 = never
        /// closed for it.
        rate_limited_close_ms: u64 = 10_000, flag limits_rate_limited_close_ms [value_name = "MS"];
        /// The most characters a publish's `data` (as sent) may have; 0 =
        /// only `max_payload` bytes limit it.
        max_message_chars: usize = 0, flag limits_max_message_chars [value_name = "N"];
        /// WebSocket upgrades one client address may start per second (0 =
        /// no limit); past it, `503`.
        handshakes_per_ip_per_s: u32 = 0, flag limits_handshakes_per_ip_per_s [value_name = "N"];
        /// The most bytes a token's `info` claim may have.
        max_info_bytes: usize = 1024, flag limits_max_info_bytes [value_name = "BYTES"];
    }
}

settings! {
    /// The server's settings, after the file and the flags are merged.
    pub struct Config, flags ConfigFlags {
        /// Number of shards (threads, one per core); 0 = one per available core.
        shards: usize = 0, flag shards [value_name = "N"];
        /// Cores to pin shards to, e.g. `[0, 1]` (flag: 0,1); empty = all cores.
        cores: Vec<usize> = Vec::new(), flag cores [value_name = "LIST", value_delimiter = ','];
        /// WebSocket listen address (port 0 picks a free port, logged).
        ws: SocketAddr = addr("127.0.0.1:8080"), flag ws [value_name = "ADDR"];
        /// RESP (Redis pub/sub) listen address: loopback by default, for
        /// backends on the same host.
        resp: SocketAddr = addr("127.0.0.1:6380"), flag resp [value_name = "ADDR"];
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
        /// The password `AUTH password` needs on RESP (empty = none).
        resp_requirepass: String = String::new(), flag resp_requirepass [value_name = "PASSWORD"];
        /// RESP users and what they may do (`[[resp_users]]`; flag:
        /// NAME/SHA256/SUBSCRIBE/PUBLISH, repeated).
        resp_users: Vec<RespUser> = Vec::new(), flag resp_users [long = "resp-user", value_name = "USER"];
        /// The bearer token every admin route but `/healthz` needs (empty =
        /// open: keep the admin port on loopback then).
        admin_token: String = String::new(), flag admin_token [value_name = "TOKEN"];
        /// Page origins allowed to open WebSocket connections, as browsers
        /// send them (`https://chat.example.com`); empty = any.
        allowed_origins: Vec<String> = Vec::new(), flag allowed_origins [value_name = "LIST", value_delimiter = ','];
    }
    tables {
        /// `[auth]`
        auth: AuthConfig, flags AuthFlags;
        /// `[limits]`
        limits: LimitsConfig, flags LimitsFlags;
        /// `[cluster]`
        cluster: ClusterConfig, flags ClusterFlags;
    }
}

impl ClusterConfig {
    /// Whether this node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.redis.is_empty()
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        anyhow::ensure!(
            !self.prefix.is_empty()
                && !self.prefix.contains(['{', '}'])
                && !self.prefix.bytes().any(|b| b.is_ascii_whitespace()),
            "cluster.prefix must be a non-empty name without braces or spaces"
        );
        anyhow::ensure!(
            self.meta_ttl_s == 0 || (self.history_ttl_s != 0 && self.meta_ttl_s >= self.history_ttl_s),
            "cluster.meta_ttl_s must be 0 or at least cluster.history_ttl_s (a room's sequence must outlive its history)"
        );
        anyhow::ensure!(
            self.presence_ttl_ms >= 300,
            "cluster.presence_ttl_ms must be at least 300"
        );
        anyhow::ensure!(
            self.position_check_ms >= 100,
            "cluster.position_check_ms must be at least 100"
        );
        anyhow::ensure!(
            self.connect_timeout_ms >= 1 && self.reconnect_max_ms >= 1,
            "cluster.connect_timeout_ms and cluster.reconnect_max_ms must be at least 1"
        );
        Ok(())
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
        self.cluster.validate()?;
        anyhow::ensure!(
            self.auth.mode == AuthMode::None || self.limits.max_info_bytes + 256 <= self.max_payload,
            "limits.max_info_bytes must be at most max_payload - 256 = {} bytes, so that a presence event with it fits a frame",
            self.max_payload.saturating_sub(256)
        );
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

    /// Every key, with its table: `("", "shards")`, `("auth", "mode")`.
    fn all_keys() -> Vec<(&'static str, &'static str)> {
        let top = Config::KEYS.iter().map(|k| ("", *k));
        let tables = Config::TABLES
            .iter()
            .flat_map(|(t, keys)| keys.iter().map(move |k| (*t, *k)));
        top.chain(tables).collect()
    }

    #[test]
    fn every_key_is_a_flag() {
        use clap::{Args, Command};
        let cmd = ConfigFlags::augment_args(Command::new("serve"));
        for (table, key) in all_keys() {
            let flag = match (table, key) {
                // One user per flag.
                ("", "resp_users") => "resp-user".to_string(),
                ("", key) => key.replace('_', "-"),
                (table, key) => format!("{table}-{}", key.replace('_', "-")),
            };
            assert!(
                cmd.get_arguments()
                    .any(|a| a.get_long() == Some(flag.as_str())),
                "no --{flag}"
            );
        }
        assert!(all_keys().len() > 40);
    }

    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../docs/configuration.md");
        for (table, key) in all_keys() {
            let name = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/configuration.md lacks `{name}`"
            );
        }
    }

    #[test]
    fn tables_read_from_a_file_and_flags() {
        let cfg = Config::from_toml(
            "[auth]\nmode = \"jwt\"\nhmac_secret = \"k\"\n[limits]\npublish_rate = 3\n\
             [[resp_users]]\nname = \"b\"\npassword_sha256 = \"00\"\nsubscribe = [\"x\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.auth.mode, AuthMode::Jwt);
        assert_eq!(cfg.limits.publish_rate, 3);
        assert_eq!(cfg.limits.join_rate, 10, "the rest defaulted");
        assert_eq!(cfg.resp_users[0].subscribe, ["x"]);
        assert!(
            Config::from_toml("[auth]\nmdoe = \"jwt\"\n").is_err(),
            "unknown keys in tables too"
        );
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            flags: ConfigFlags,
        }
        let cli = Cli::parse_from([
            "x",
            "--auth-mode",
            "jwt",
            "--limits-publish-rate",
            "7",
            "--resp-user",
            "ann/abc/a,b:*/",
        ]);
        let mut cfg = Config::default();
        cli.flags.apply(&mut cfg);
        assert_eq!((cfg.auth.mode, cfg.limits.publish_rate), (AuthMode::Jwt, 7));
        assert_eq!(cfg.resp_users[0].subscribe, ["a", "b:*"]);
        assert!(cfg.resp_users[0].publish.is_empty());
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
