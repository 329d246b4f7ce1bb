//! The scripts' replies, read into plain values. A reply of the wrong
//! shape is `None`: the caller treats it as an error from Redis.

use bytes::Bytes;

use crate::proto::resp::reply::Reply;

/// `rc_pub`'s answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Sequenced {
    /// The message's seq.
    pub seq: u64,
    /// The room's epoch.
    pub epoch: u64,
}

/// `rc_join`'s answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Read {
    /// The room's epoch.
    pub epoch: u64,
    /// Its last seq.
    pub top: u64,
    /// The messages asked for, oldest first: (seq, body).
    pub entries: Vec<(u64, Bytes)>,
}

/// A member field and value.
pub type Pair = (Bytes, Bytes);

fn epoch(r: &Reply) -> Option<u64> {
    let b = r.bytes()?;
    Some(u64::from_be_bytes(b[..].try_into().ok()?))
}

fn seq(r: &Reply) -> Option<u64> {
    u64::try_from(r.int()?).ok()
}

/// Reads `rc_pub`'s `{seq, epoch, receivers}`.
pub fn sequenced(r: &Reply) -> Option<Sequenced> {
    let a = r.array()?;
    Some(Sequenced {
        seq: seq(a.first()?)?,
        epoch: epoch(a.get(1)?)?,
    })
}

/// Reads `rc_join`'s `{epoch, seq, entries, flags}`; entries are
/// `[id, [field, value, ...]]` with the id `<seq>-0` and the body in
/// field `d`.
pub fn read(r: &Reply) -> Option<Read> {
    let a = r.array()?;
    let mut entries = Vec::new();
    for e in a.get(2)?.array()? {
        let e = e.array()?;
        let id = e.first()?.bytes()?;
        let s = std::str::from_utf8(id)
            .ok()?
            .split('-')
            .next()?
            .parse()
            .ok()?;
        let fields = e.get(1)?.array()?;
        let body = fields
            .chunks(2)
            .find(|kv| {
                kv.first()
                    .and_then(Reply::bytes)
                    .is_some_and(|k| &k[..] == b"d")
            })
            .and_then(|kv| kv.get(1)?.bytes().cloned())?;
        entries.push((s, body));
    }
    Some(Read {
        epoch: epoch(a.first()?)?,
        top: seq(a.get(1)?)?,
        entries,
    })
}

/// Reads `HMGET meta e s`: `Some(None)` when the room has no sequence.
pub fn position(r: &Reply) -> Option<Option<(u64, u64)>> {
    let a = r.array()?;
    let (e, s) = (a.first()?, a.get(1)?);
    if e.is_null() {
        return Some(None);
    }
    Some(Some((epoch(e)?, if s.is_null() { 0 } else { seq(s)? })))
}

fn pairs(r: &Reply) -> Option<Vec<Pair>> {
    r.array()?
        .chunks(2)
        .map(|kv| Some((kv.first()?.bytes()?.clone(), kv.get(1)?.bytes()?.clone())))
        .collect()
}

/// Reads `rc_pres_add`'s `{had_lease, expired}`.
pub fn lease(r: &Reply) -> Option<(bool, Vec<Pair>)> {
    let a = r.array()?;
    Some((a.first()?.int()? != 0, pairs(a.get(1)?)?))
}

/// Reads `rc_pres_list`'s `{live, expired}`.
pub fn listed(r: &Reply) -> Option<(Vec<Pair>, Vec<Pair>)> {
    let a = r.array()?;
    Some((pairs(a.first()?)?, pairs(a.get(1)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(b)))
    }

    fn arr(v: Vec<Reply>) -> Reply {
        Reply::Array(Some(v))
    }

    #[test]
    fn shapes() {
        let e = 5u64.to_be_bytes();
        assert_eq!(
            sequenced(&arr(vec![Reply::Int(3), bulk(&e), Reply::Int(2)])),
            Some(Sequenced { seq: 3, epoch: 5 })
        );
        assert_eq!(sequenced(&arr(vec![Reply::Int(3), bulk(b"short")])), None);
        let entry =
            |s: &str, b: &[u8]| arr(vec![bulk(s.as_bytes()), arr(vec![bulk(b"d"), bulk(b)])]);
        let r = arr(vec![
            bulk(&e),
            Reply::Int(9),
            arr(vec![entry("8-0", b"x"), entry("9-0", b"y")]),
            Reply::Int(0),
        ]);
        assert_eq!(
            read(&r),
            Some(Read {
                epoch: 5,
                top: 9,
                entries: vec![(8, "x".into()), (9, "y".into())]
            })
        );
        assert_eq!(
            position(&arr(vec![Reply::Bulk(None), Reply::Bulk(None)])),
            Some(None)
        );
        assert_eq!(
            position(&arr(vec![bulk(&e), bulk(b"12")])),
            Some(Some((5, 12)))
        );
        assert_eq!(
            lease(&arr(vec![
                Reply::Int(0),
                arr(vec![bulk(b"n/1"), bulk(b"ann")])
            ])),
            Some((false, vec![("n/1".into(), "ann".into())]))
        );
        assert_eq!(
            listed(&arr(vec![arr(vec![]), arr(vec![])])),
            Some((vec![], vec![]))
        );
        assert_eq!(read(&Reply::Error("ERR x".into())), None);
    }
}
