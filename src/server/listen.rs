//! Listening sockets: one per shard per protocol, bound to the same
//! address with `SO_REUSEPORT`, so the kernel spreads connections over
//! the shards.

use std::net::{SocketAddr, TcpListener as StdListener};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

/// Binds `n` listening sockets to the same address with SO_REUSEPORT, so the
/// kernel spreads incoming connections over the shards. With port 0 the
/// first socket picks the port and the others follow it.
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<StdListener>> {
    let mut out: Vec<StdListener> = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket
            .bind(&addr.into())
            .with_context(|| format!("binding {addr}"))?;
        socket.listen(65535)?;
        let listener: StdListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

/// Where the server ended up listening.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// WebSocket address.
    pub ws: SocketAddr,
    /// RESP address.
    pub resp: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
}
