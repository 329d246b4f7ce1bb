//! Shard-local placement for ringcast: room names whose home shard is known.
//!
//! ringcast gives every room a home shard (FNV-1a of its name modulo the shard
//! count); members on other shards get deliveries through the shard-to-shard
//! rings. To measure what crossing shards costs, the generator can choose room
//! names so that room `r` is homed on shard `r mod N`, then seat each member
//! (which learns its shard from `welcome`) only in rooms homed on its shard.
//! The slot arithmetic lives in [`crate::control::Layout::local_slot`].

/// FNV-1a of a room name modulo the shard count: the shard ringcast makes
/// the room's home (it must match the server's own choice).
pub fn ringcast_home(name: &[u8], shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(shards.max(1))) as u32
}

/// Room numbers whose ringcast home is `r % shards` for room index `r`, so a
/// room's members can all be placed on its home shard.
pub fn home_aligned_rooms(rooms: u32, shards: u32) -> Vec<u32> {
    let mut used = std::collections::HashSet::new();
    (0..rooms)
        .map(|r| {
            let want = r % shards.max(1);
            let mut n = r;
            loop {
                if !used.contains(&n) && ringcast_home(format!("r{n}").as_bytes(), shards) == want {
                    used.insert(n);
                    return n;
                }
                n += 1;
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_aligned_rooms_land_on_the_intended_shard() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        assert_eq!(
            ringcast_home(b"a", u32::MAX),
            (0xaf63_dc4c_8601_ec8cu64 % u64::from(u32::MAX)) as u32
        );
        let nums = home_aligned_rooms(50, 2);
        let mut seen = std::collections::HashSet::new();
        for (r, &n) in nums.iter().enumerate() {
            assert_eq!(ringcast_home(format!("r{n}").as_bytes(), 2), r as u32 % 2);
            assert!(seen.insert(n), "room number {n} reused");
        }
        assert_eq!(home_aligned_rooms(5, 1), vec![0, 1, 2, 3, 4]);
    }
}
