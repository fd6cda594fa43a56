//! The wire side of the Redis store, pure (no IO): Redis key names, the EVALSHA command for
//! one group of ops, the reply → [`Outcome`]s, and the Cluster slot of a key.
//!
//! # Keys
//! Every key of one layer key is `<prefix>{<layer key>}<suffix>`, so on Redis Cluster all of
//! them hash to one slot (the hash tag is the text between the first `{` and the next `}`).
//! `{`, `}` and `%` in a layer key are written `%7B`, `%7D`, `%25` (so the tag cannot end early
//! and two layer keys cannot meet), and an empty layer key is written `%` (an empty tag would
//! hash the whole name). Suffixes:
//! - rate: `:r:<emission ns>:<burst>` — one GCRA TAT (µs) per (key, rate), like LocalStore;
//! - concurrency: `:c` — a ZSET of lease members scored by expiry (µs);
//! - distinct: `:d:<window µs>:<epoch>` — one HyperLogLog per bucket; `:d:<window µs>:m:<lo>`
//!   the merge of the live buckets while `lo` is the oldest; `:d:<window µs>:t` the script's
//!   scratch copy, deleted before the script returns.

use std::fmt::Write as _;
use std::time::Duration;

use redis::{Cmd, Value};

use crate::limit::{Op, OpSpec, Outcome};

/// The evaluate script (check, then charge; see the file).
pub(super) const EVALUATE: &str = include_str!("evaluate.lua");
/// The undo script (lease release and refunds).
pub(super) const UNDO: &str = include_str!("undo.lua");

/// The retry hint for concurrency denials (as LocalStore: slots free when responses end).
pub(super) const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole microseconds, rounded up (a window is never shorter than asked).
fn micros_ceil(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX)
}

/// Appends `<prefix>{<escaped layer key>}` (see the module docs).
pub(super) fn push_tag(out: &mut String, prefix: &str, key: &str) {
    out.push_str(prefix);
    out.push('{');
    if key.is_empty() {
        out.push('%');
    }
    for c in key.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out.push('}');
}

/// The Redis key of one op (for distinct ops, the prefix of its bucket keys).
pub(super) fn op_key(prefix: &str, op: &Op) -> String {
    let mut k = String::with_capacity(prefix.len() + op.key().len() + 32);
    push_tag(&mut k, prefix, op.key());
    // Writing to a String cannot fail.
    let _ = match op {
        Op::Rate { rate, .. } => write!(k, ":r:{}:{}", nanos(rate.emission), rate.burst.max(1)),
        Op::Concurrency { .. } => write!(k, ":c"),
        Op::Distinct { window, .. } => write!(k, ":d:{}", micros_ceil(*window)),
    };
    k
}

/// The Cluster slot of a key: CRC16-XMODEM of its hash tag (or of the whole key) mod 16384
/// (Redis Cluster specification, "Keys distribution model").
pub(super) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16_384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Whether the store answers this op itself, without Redis: a rate with emission 0 is
/// unlimited (LocalStore's convention), so it is always allowed and stores nothing.
pub(super) fn answered_locally(op: &Op) -> Option<Outcome> {
    match op {
        Op::Rate { rate, .. } if rate.emission.is_zero() => Some(Outcome::Allowed {
            remaining: u64::MAX,
            reset: Duration::ZERO,
        }),
        _ => None,
    }
}

/// One op of a group, as sent: its index in the request, its Redis key, its lease member
/// (concurrency ops).
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub index: usize,
    pub key: String,
    pub lease: Option<String>,
}

/// The EVALSHA command for one group of ops (all in one slot on Cluster).
pub(super) fn eval_cmd(sha: &str, ops: &[OpSpec], group: &[Sent], lease_ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(group.len());
    for s in group {
        cmd.arg(s.key.as_str());
    }
    let mut num = itoa_buf();
    for s in group {
        let Some(spec) = ops.get(s.index) else {
            continue; // unreachable: indices come from `ops`
        };
        let enforce: &[u8] = if spec.enforce { b"1" } else { b"0" };
        match &spec.op {
            Op::Rate { rate, cost, .. } => {
                cmd.arg("r").arg(enforce);
                cmd.arg(fmt(&mut num, nanos(rate.emission)));
                cmd.arg(fmt(&mut num, u64::from(rate.burst.max(1))));
                cmd.arg(fmt(&mut num, u64::from(*cost)));
            }
            Op::Concurrency { max, .. } => {
                cmd.arg("c").arg(enforce);
                cmd.arg(fmt(&mut num, u64::from(*max)));
                cmd.arg(s.lease.as_deref().unwrap_or(""));
                cmd.arg("");
            }
            Op::Distinct {
                member,
                max,
                window,
                ..
            } => {
                cmd.arg("d").arg(enforce);
                cmd.arg(fmt(&mut num, u64::from(*max)));
                cmd.arg(fmt(&mut num, micros_ceil(*window)));
                // The member's 8 bytes as they are: Redis hashes them (MurmurHash64A).
                cmd.arg(&member.to_be_bytes()[..]);
            }
        }
    }
    cmd.arg(fmt(&mut num, micros_ceil(lease_ttl)));
    cmd
}

fn itoa_buf() -> String {
    String::with_capacity(20)
}

fn fmt(buf: &mut String, n: u64) -> &str {
    buf.clear();
    let _ = write!(buf, "{n}");
    buf.as_str()
}

/// What one undo entry gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Undo {
    /// Release a concurrency lease member.
    Lease { key: String, member: String },
    /// Move a rate key's TAT back by this many µs.
    Refund { key: String, micros: u64 },
}

impl Undo {
    pub(super) fn key(&self) -> &str {
        match self {
            Undo::Lease { key, .. } | Undo::Refund { key, .. } => key,
        }
    }
}

/// The EVALSHA command of the undo script for entries of one slot.
pub(super) fn undo_cmd(sha: &str, entries: &[Undo]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(entries.len());
    for e in entries {
        cmd.arg(e.key());
    }
    for e in entries {
        match e {
            Undo::Lease { member, .. } => cmd.arg("c").arg(member.as_str()),
            Undo::Refund { micros, .. } => cmd.arg("r").arg(*micros),
        };
    }
    cmd
}

/// The refund for a rate op that was charged: `cost × emission`, in whole µs.
pub(super) fn refund_micros(op: &Op) -> Option<u64> {
    match op {
        Op::Rate { rate, cost, .. } if *cost > 0 => {
            Some(nanos(rate.emission).saturating_mul(u64::from(*cost)) / 1_000)
        }
        _ => None,
    }
}

/// A reply that is not what the script returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected script reply: {0}")]
pub(super) struct BadReply(&'static str);

fn int(v: &Value) -> Result<u64, BadReply> {
    match v {
        // The script clamps at 0; a negative value would be a bug there, read as 0.
        Value::Int(n) => Ok(u64::try_from(*n).unwrap_or(0)),
        _ => Err(BadReply("not an integer")),
    }
}

/// The script's reply (3 integers per op of `group`) → one outcome per op, in group order.
pub(super) fn decode(
    reply: &Value,
    ops: &[OpSpec],
    group: &[Sent],
) -> Result<Vec<Outcome>, BadReply> {
    let Value::Array(items) = reply else {
        return Err(BadReply("not an array"));
    };
    if items.len() != group.len() * 3 {
        return Err(BadReply("wrong length"));
    }
    let mut out = Vec::with_capacity(group.len());
    for (s, triple) in group.iter().zip(items.chunks_exact(3)) {
        let (code, x, y) = match triple {
            [c, x, y] => (int(c)?, int(x)?, int(y)?),
            _ => return Err(BadReply("wrong length")),
        };
        let op = &ops.get(s.index).ok_or(BadReply("index"))?.op;
        let d = Duration::from_nanos(y);
        out.push(match code {
            0 => Outcome::Allowed {
                remaining: x,
                reset: d,
            },
            1 => Outcome::Denied {
                current: x,
                limit: match op {
                    Op::Rate { rate, .. } => u64::from(rate.burst.max(1)),
                    Op::Concurrency { max, .. } | Op::Distinct { max, .. } => u64::from(*max),
                },
                retry_after: if matches!(op, Op::Concurrency { .. }) {
                    CONCURRENCY_RETRY
                } else {
                    d
                },
            },
            _ => return Err(BadReply("unknown code")),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Rate;

    #[test]
    fn crc16_and_slots_match_the_cluster_spec() {
        // The spec's check value, and slots redis-cli `CLUSTER KEYSLOT` gives.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16_384);
        assert_eq!(slot(b"foo{{bar}}zap"), crc16(b"{bar") % 16_384);
    }

    #[test]
    fn keys_of_one_layer_share_a_tag_and_braces_cannot_escape() {
        let rate = Op::Rate {
            key: "ja4:t13d{x}%".into(),
            rate: Rate {
                emission: Duration::from_millis(100),
                burst: 0,
            },
            cost: 1,
        };
        assert_eq!(
            op_key("pc:", &rate),
            "pc:{ja4:t13d%7Bx%7D%25}:r:100000000:1"
        );
        let conc = Op::Concurrency {
            key: "ja4:t13d{x}%".into(),
            max: 1,
        };
        let a = op_key("pc:", &rate);
        let b = op_key("pc:", &conc);
        assert_eq!(slot(a.as_bytes()), slot(b.as_bytes()));
        let empty = Op::Concurrency {
            key: String::new(),
            max: 1,
        };
        assert_eq!(op_key("pc:", &empty), "pc:{%}:c");
        let d = Op::Distinct {
            key: "s".into(),
            member: 1,
            max: 1,
            window: Duration::from_nanos(1_500),
        };
        assert_eq!(op_key("x", &d), "x{s}:d:2");
    }

    #[test]
    fn decode_rejects_malformed_replies() {
        let ops = [OpSpec {
            op: Op::Concurrency {
                key: "c".into(),
                max: 3,
            },
            enforce: true,
        }];
        let group = [Sent {
            index: 0,
            key: "k".into(),
            lease: None,
        }];
        let ok = Value::Array(vec![Value::Int(1), Value::Int(3), Value::Int(5)]);
        assert_eq!(
            decode(&ok, &ops, &group),
            Ok(vec![Outcome::Denied {
                current: 3,
                limit: 3,
                retry_after: CONCURRENCY_RETRY
            }])
        );
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Int(0)]),
            Value::Array(vec![Value::Int(7), Value::Int(0), Value::Int(0)]),
            Value::Array(vec![Value::Int(0), Value::Nil, Value::Int(0)]),
        ] {
            assert!(decode(&bad, &ops, &group).is_err());
        }
    }
}
