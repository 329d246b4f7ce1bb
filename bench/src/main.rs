//! `ringcast-bench`: run a scenario against a target, serve the bare io_uring
//! ceiling, or turn run records into the matrix report. See bench/README.md.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use ringcast_bench::control::Layout;
use ringcast_bench::procstat;
use ringcast_bench::run::{Mode, RunOptions};
use ringcast_bench::target::Target;
use ringcast_bench::token::{Signer, TokenVia, Tokens};

#[derive(Parser)]
#[command(
    name = "ringcast-bench",
    version,
    about = "Fan-out load generator for ringcast and its peers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario against one target and write its JSON record.
    Run(Box<RunArgs>),
    /// Serve the bare io_uring ceiling: pre-encoded frames, no protocol logic.
    Ceiling(CeilingArgs),
    /// Merge run records into latest.json, a markdown table and SVG charts.
    Report(ReportArgs),
    /// Subscribe to a RESP channel and count the messages (resp-publish).
    Subscribe(SubscribeArgs),
}

#[derive(Args)]
struct SubscribeArgs {
    /// The server's RESP address (loopback).
    #[arg(long, default_value = "127.0.0.1:6379")]
    addr: SocketAddrV4,
    /// Channel.
    #[arg(long)]
    channel: String,
    /// Stop once this many messages came.
    #[arg(long)]
    count: u64,
    /// Stop when nothing came for this long (ms).
    #[arg(long, default_value_t = 10_000)]
    idle_ms: u64,
}

#[derive(Args)]
struct RunArgs {
    /// System to load.
    #[arg(long, value_enum)]
    target: Target,
    /// Where the target listens (loopback only). Several, comma-separated:
    /// the nodes of one cluster; every room's members and publishers are
    /// spread evenly over them.
    #[arg(long, default_value = "127.0.0.1:8080", value_delimiter = ',')]
    addr: Vec<SocketAddrV4>,
    /// Scenario name written into the record.
    #[arg(long, default_value = "custom")]
    scenario: String,
    /// Member connections (ignored when --members is given).
    #[arg(long, default_value_t = 1000)]
    connections: u32,
    /// Rooms (0: connections join nothing and stay idle).
    #[arg(long, default_value_t = 10)]
    rooms: u32,
    /// Members per room (sets connections = rooms × members).
    #[arg(long)]
    members: Option<u32>,
    /// Publishers, spread over the rooms.
    #[arg(long, default_value_t = 10)]
    publishers: u32,
    /// Offered publishes per second over all publishers (find-max: the first step).
    #[arg(long)]
    rate: Option<f64>,
    /// Offered deliveries per second instead (divided by members per room).
    #[arg(long)]
    delivery_rate: Option<f64>,
    /// Data bytes per publish (the object the generator stamps and pads).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Warm-up seconds per step.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured seconds per step.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Longest wait for outstanding deliveries after a step, seconds.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Connects per second (0: unpaced, bounded by --max-connecting in flight).
    #[arg(long, default_value_t = 5000.0)]
    connect_rate: f64,
    /// Connects in flight per worker at most.
    #[arg(long, default_value_t = 256)]
    max_connecting: u32,
    /// Longest wait for the connect ramp, seconds.
    #[arg(long, default_value_t = 60.0)]
    connect_timeout: f64,
    /// Loopback source addresses to spread connections over (127.0.0.1, .2, …).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Cores to pin generator threads to, e.g. "1" or "2,3".
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Generator threads (default: one per --cores entry, else 1).
    #[arg(long)]
    threads: Option<u32>,
    /// Raise the rate step by step until p99 exceeds --p99-ms or anything is lost.
    #[arg(long)]
    find_max: bool,
    /// Rate multiplier per find-max step.
    #[arg(long, default_value_t = 1.25)]
    factor: f64,
    /// find-max p99 bound, ms.
    #[arg(long, default_value_t = 50.0)]
    p99_ms: f64,
    /// find-max step limit.
    #[arg(long, default_value_t = 12)]
    max_steps: u32,
    /// find-max: steps that halve the gap (geometrically) between the last
    /// rate that held and the first that failed.
    #[arg(long, default_value_t = 2)]
    refine: u32,
    /// Offer --rate (well past saturation) for one bounded step.
    #[arg(long)]
    overload: bool,
    /// Connect and hold for --duration; no publishing (memory per connection).
    #[arg(long)]
    idle: bool,
    /// Stop the server (SIGSTOP, then SIGCONT) for this long every
    /// --pause-every-ms of each measured window: the same stalls for every
    /// target, to compare how each recovers from one (0: never).
    #[arg(long, default_value_t = 0.0)]
    pause_ms: f64,
    /// The period of --pause-ms, from one pause's start to the next.
    #[arg(long, default_value_t = 500.0)]
    pause_every_ms: f64,
    /// Server pid, or one per node, comma-separated (default: found by the
    /// ports in --addr); CPU and RSS are summed over them.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// The Redis the nodes share: its CPU time over the measured window is
    /// reported per published message (default: found by --redis-addr's port).
    #[arg(long)]
    redis_pid: Option<u32>,
    /// The Redis the nodes share (loopback): its `INFO commandstats` is read
    /// before and after the measured window, per published message.
    #[arg(long)]
    redis_addr: Option<SocketAddrV4>,
    /// ringcast shard count, recorded.
    #[arg(long)]
    shards: Option<u32>,
    /// Cores the server is pinned to, recorded.
    #[arg(long)]
    server_cores: Option<String>,
    /// ringcast only: put every room's members on the room's home shard (needs
    /// --shards; members read their shard from `welcome`). Connect more sockets
    /// than rooms × members: those that find their shard's rooms full stay idle.
    #[arg(long)]
    shard_local: bool,
    /// Members per room under --shard-local (default: connections / rooms).
    #[arg(long)]
    local_members: Option<u32>,
    /// ringcast-ws with `--auth-mode jwt`: sign one HS256 token per socket
    /// with this secret (sub = the socket's user name), before the first connect.
    #[arg(long, value_name = "SECRET", conflicts_with_all = ["token_es256_key", "token_file"])]
    token_hs256_secret: Option<String>,
    /// As --token-hs256-secret, but ES256 with this PEM (PKCS#8 P-256) private key.
    #[arg(long, value_name = "PEM", conflicts_with = "token_file")]
    token_es256_key: Option<PathBuf>,
    /// Tokens from a file, one a line; socket i presents line i mod N.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Where a token goes: `?token=` on the upgrade, or a first `auth` frame.
    #[arg(long, value_enum, default_value_t = TokenVia::Query)]
    token_via: TokenVia,
    /// Minted tokens' lifetime (`exp` = now + this), seconds.
    #[arg(long, default_value_t = 3600)]
    token_exp_s: u64,
    /// Minted tokens' `rooms` patterns.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    token_rooms: Vec<String>,
    /// ringcast-ws: a socket that joins nothing is ready on `welcome`, not on
    /// the `101` (always so with tokens; give it to the side without tokens
    /// of an A/B for the same definition of ready).
    #[arg(long)]
    await_welcome: bool,
    /// Per-connection unsent-bytes cap, bytes.
    #[arg(long, default_value_t = 4 << 20)]
    out_cap: usize,
    /// Write the JSON record here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct CeilingArgs {
    /// Listen address (loopback).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddrV4,
    /// Core to pin to.
    #[arg(long)]
    core: Option<usize>,
    /// Submission queue entries.
    #[arg(long, default_value_t = 4096)]
    entries: u32,
    /// What it speaks.
    #[arg(long, value_enum, default_value = "ws")]
    protocol: ringcast_bench::ceiling::Protocol,
}

#[derive(Args)]
struct ReportArgs {
    /// Run records (JSON files or directories of them).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where latest.json, benchmarks.md and the SVG charts go.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => run(*a),
        Cmd::Ceiling(a) => ringcast_bench::ceiling::serve(a.listen, a.core, a.entries, a.protocol),
        Cmd::Report(a) => ringcast_bench::report::write(&a.inputs, &a.out_dir),
        Cmd::Subscribe(a) => ringcast_bench::subscriber::run(
            a.addr,
            &a.channel,
            a.count,
            std::time::Duration::from_millis(a.idle_ms),
        )
        .map(drop),
    }
}

/// The run's tokens, made now (before any connect, so never timed).
fn tokens(a: &RunArgs, sockets: u32) -> Result<Option<std::sync::Arc<Tokens>>> {
    let signer = if let Some(secret) = &a.token_hs256_secret {
        Signer::Hs256(secret.as_bytes().to_vec())
    } else if let Some(path) = &a.token_es256_key {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Signer::Es256(pem)
    } else if let Some(path) = &a.token_file {
        check_token_target(a.target)?;
        return Ok(Some(Tokens::from_file(path, a.token_via)?.into()));
    } else {
        if a.await_welcome && a.target != Target::RingcastWs {
            bail!("--await-welcome needs --target ringcast-ws");
        }
        return Ok(None);
    };
    check_token_target(a.target)?;
    let t0 = std::time::Instant::now();
    let t = Tokens::mint(&signer, sockets, a.token_exp_s, &a.token_rooms, a.token_via)?;
    if !a.quiet {
        eprintln!(
            "minted {} {:?} tokens in {:.2} s (before the first connect, untimed)",
            t.len(),
            signer.algorithm(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(Some(t.into()))
}

fn check_token_target(target: Target) -> Result<()> {
    if target != Target::RingcastWs {
        bail!("tokens need --target ringcast-ws");
    }
    Ok(())
}

fn run(a: RunArgs) -> Result<()> {
    if let Some(bad) = a.addr.iter().find(|x| !x.ip().is_loopback()) {
        bail!("--addr must be a loopback address (127.0.0.0/8), not {bad}");
    }
    if let Some(bad) = a.redis_addr.filter(|x| !x.ip().is_loopback()) {
        bail!("--redis-addr must be a loopback address (127.0.0.0/8), not {bad}");
    }
    if a.addr.is_empty() || a.addr.len() > 64 {
        bail!("--addr takes 1 to 64 addresses");
    }
    if a.sources == 0 || a.sources > 250 {
        bail!("--sources must be 1..=250");
    }
    let connections = a.members.map_or(a.connections, |m| m * a.rooms);
    let members = if let (true, Some(m)) = (a.shard_local, a.local_members) {
        m as f64
    } else if a.rooms > 0 {
        connections as f64 / a.rooms as f64
    } else {
        0.0
    };
    let rate = match (a.rate, a.delivery_rate) {
        (Some(r), _) => r,
        (None, Some(d)) if members > 0.0 => d / members,
        _ if a.idle || a.rooms == 0 => 0.0,
        _ => bail!("give --rate (publishes/s) or --delivery-rate (deliveries/s)"),
    };
    let publishers = if a.rooms == 0 { 0 } else { a.publishers };
    if publishers > 0 && !a.target.separate_publishers() && publishers > connections {
        bail!("--publishers ({publishers}) cannot exceed member connections ({connections})");
    }
    let threads = a.threads.unwrap_or(a.cores.len().max(1) as u32).max(1);
    let sources = if a.sources > 1 {
        (1..=a.sources)
            .map(|i| Ipv4Addr::new(127, 0, 0, i))
            .collect()
    } else {
        vec![]
    };
    let shard_local = match (a.shard_local, a.shards) {
        (false, _) => 0,
        (true, Some(n)) if n >= 1 && a.target == Target::RingcastWs && a.addr.len() == 1 => n,
        (true, _) => {
            bail!("--shard-local needs --target ringcast-ws, --shards N and one --addr")
        }
    };
    let room_numbers = if shard_local > 0 {
        ringcast_bench::placement::home_aligned_rooms(a.rooms, shard_local)
    } else {
        (0..a.rooms).collect()
    };
    let tokens = tokens(&a, connections)?;
    let layout = Layout {
        target: a.target,
        addrs: a.addr.clone(),
        connections,
        rooms: a.rooms,
        publishers,
        size: a.size,
        threads,
        cores: a.cores.clone(),
        sources,
        connect_rate: a.connect_rate,
        max_connecting: a.max_connecting.max(1),
        out_cap: a.out_cap,
        room_numbers,
        shard_local,
        local_members: a.local_members,
        await_welcome: a.await_welcome || tokens.is_some(),
        tokens,
    };
    let mode = if a.idle || a.rooms == 0 {
        Mode::Idle
    } else if a.find_max {
        Mode::FindMax {
            start: rate,
            factor: a.factor.max(1.01),
            p99_ms: a.p99_ms,
            steps: a.max_steps.clamp(1, 40),
            refine: a.refine.min(6),
        }
    } else if a.overload {
        Mode::Overload(rate)
    } else {
        Mode::Fixed(rate)
    };
    let opts = RunOptions {
        scenario: a.scenario,
        mode,
        warmup_s: a.warmup.clamp(0.0, 600.0),
        duration_s: a.duration.clamp(0.1, 3600.0),
        drain_s: a.drain.clamp(0.0, 600.0),
        connect_timeout_s: a.connect_timeout.clamp(1.0, 3600.0),
        server_pids: a.server_pid,
        redis_pid: a.redis_pid.or_else(|| {
            a.redis_addr
                .and_then(|r| procstat::pid_listening_on(r.port()))
        }),
        redis_addr: a.redis_addr,
        shards: a.shards,
        server_cores: a.server_cores,
        pauses: ringcast_bench::pause::Pauses::new(a.pause_ms, a.pause_every_ms),
        progress: !a.quiet,
    };
    let rec = ringcast_bench::run::run(layout, opts)?;
    print!("{}", rec.summary());
    if let Some(path) = a.out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        let json = serde_json::to_string_pretty(&rec)?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
