//! The shard's io_uring file table: each socket registered at the index of
//! its own fd number, so a send skips the per-call file lookup and
//! reference count (`fget`/`fput`, 3–4% of a fan-out profile).
//!
//! The table holds a reference to each socket it lists: a connection must
//! leave it ([`unregister`]) before its fd closes, or the socket would stay
//! open after close. The table belongs to the shard's send ring
//! ([`super::sendring`]) and goes with it; while the shard has none,
//! registering is a no-op that says so.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};

use io_uring::IoUring;

thread_local! {
    /// This shard's send ring and its table size, while it has one.
    static TABLE: RefCell<Option<(Weak<IoUring>, u32)>> = const { RefCell::new(None) };
}

/// Makes `ring`'s sparse table of `size` slots this shard's file table.
pub fn install(ring: &Rc<IoUring>, size: u32) {
    TABLE.set(Some((Rc::downgrade(ring), size)));
}

/// Forgets the table (its ring is going away).
pub fn uninstall() {
    TABLE.set(None);
}

/// Puts `fd` in this shard's file table at index `fd`. False when the
/// shard has no table or `fd` does not fit; then sends use the plain fd.
pub fn register(fd: RawFd) -> bool {
    update(fd, fd).unwrap_or(false)
}

/// Takes `fd` out of this shard's file table. Must run before `fd` closes.
/// `Ok(false)`: there was no table, so nothing to do.
pub fn unregister(fd: RawFd) -> io::Result<bool> {
    update(fd, -1)
}

fn update(slot: RawFd, fd: RawFd) -> io::Result<bool> {
    TABLE.with_borrow(|table| {
        let Some((ring, size)) = table else {
            return Ok(false);
        };
        let Some(ring) = ring.upgrade() else {
            return Ok(false);
        };
        match u32::try_from(slot) {
            Ok(slot) if slot < *size => {
                ring.submitter().register_files_update(slot, &[fd])?;
                Ok(true)
            }
            _ => Ok(false),
        }
    })
}
