//! The protocol version a connection speaks.

/// The protocol a connection speaks, switched by `HELLO 2|3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Proto {
    /// RESP2: nulls are `$-1`, maps are flat arrays, pushes are arrays.
    #[default]
    Resp2,
    /// RESP3: nulls are `_`, maps are `%`, pushes are `>`.
    Resp3,
}
