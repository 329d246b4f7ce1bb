//! The WebSocket close codes the chat protocol uses besides RFC 6455's
//! own (1002 protocol error, 1007 invalid UTF-8, 1009 too big). The
//! 4000–4999 range is the application's (RFC 6455 §7.4.2).

/// The server is shutting down (RFC 6455 "going away").
pub const GOING_AWAY: u16 = 1001;

/// The connection's outbound queue passed `outbound_limit`: a slow
/// consumer (RFC 6455 "policy violation").
pub const SLOW_CONSUMER: u16 = 1008;

/// A token that does not verify (bad signature, wrong algorithm or
/// audience, …), a request other than `auth` before the token, or no
/// token within `auth.timeout_ms` of connecting.
pub const UNAUTHORIZED: u16 = 4001;

/// The connection's token expired without a refresh, or the token it
/// offered had already expired.
pub const TOKEN_EXPIRED: u16 = 4002;

/// A `refresh` with a token for another user (`sub`): a connection's user
/// never changes. A request its token does not allow gets the `forbidden`
/// error instead, and the connection stays.
pub const FORBIDDEN: u16 = 4003;

/// The client did not answer a ping within `ping_timeout_ms`.
pub const PING_TIMEOUT: u16 = 4008;

/// The client stayed over its rate limit for `rate_limited_close_ms`:
/// refused at least once in every second of it.
pub const RATE_LIMITED: u16 = 4029;
