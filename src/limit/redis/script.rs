//! The wire side of the Redis store, pure (no IO): Redis key names, the EVALSHA command for
//! a batch of requests (each one group of ops) and give-backs, the reply → [`Outcome`]s, and
//! the Cluster slot of a key.
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

/// The script: give-backs (lease releases, refunds), then a batch of requests, each checked
/// then charged (see the file).
pub(super) const EVALUATE: &str = include_str!("evaluate.lua");

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

/// Command arguments packed in one buffer: two allocations however many there are.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Args {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Args {
    pub(super) fn push(&mut self, arg: &[u8]) {
        self.bytes.extend_from_slice(arg);
        self.ends.push(self.bytes.len());
    }

    /// A number in decimal, as Redis and Lua's `tonumber` read it.
    pub(super) fn push_num(&mut self, n: u64) {
        // Writing to a Vec cannot fail.
        let _ = std::io::Write::write_fmt(&mut self.bytes, format_args!("{n}"));
        self.ends.push(self.bytes.len());
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let arg = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            arg
        })
    }
}

/// One request's share of a script call: a key per op, and its values (the op count, then
/// each op's kind and parameters; see evaluate.lua).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Part {
    keys: Args,
    args: Args,
}

impl Part {
    /// How many ops the part sends (its reply is 3 integers each).
    pub(super) fn ops(&self) -> usize {
        self.keys.len()
    }
}

/// The part for one group of ops (all in one slot on Cluster).
pub(super) fn part(ops: &[OpSpec], group: &[Sent]) -> Part {
    let mut p = Part::default();
    p.args.push_num(group.len() as u64);
    for s in group {
        let Some(spec) = ops.get(s.index) else {
            continue; // unreachable: indices come from `ops`
        };
        p.keys.push(s.key.as_bytes());
        // Upper case: the op enforces.
        let kind = |lower: &'static [u8], upper: &'static [u8]| {
            if spec.enforce {
                upper
            } else {
                lower
            }
        };
        match &spec.op {
            Op::Rate { rate, cost, .. } => {
                p.args.push(kind(b"r", b"R"));
                p.args.push_num(nanos(rate.emission));
                p.args.push_num(u64::from(rate.burst.max(1)));
                p.args.push_num(u64::from(*cost));
            }
            Op::Concurrency { max, .. } => {
                p.args.push(kind(b"c", b"C"));
                p.args.push_num(u64::from(*max));
                p.args.push(s.lease.as_deref().unwrap_or("").as_bytes());
            }
            Op::Distinct {
                member,
                max,
                window,
                ..
            } => {
                p.args.push(kind(b"d", b"D"));
                p.args.push_num(u64::from(*max));
                p.args.push_num(micros_ceil(*window));
                // The member's 8 bytes as they are: Redis hashes them (MurmurHash64A).
                p.args.push(&member.to_be_bytes());
            }
        }
    }
    p
}

/// One `EVALSHA` of evaluate.lua: the give-backs `undo` (all in one slot on Cluster), then
/// the `parts`, each evaluated all or nothing, in order.
pub(super) fn batch_cmd<'a>(
    sha: &str,
    lease_ttl: Duration,
    undo: &[Undo],
    parts: impl Iterator<Item = &'a Part> + Clone,
) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    let keys = undo.len() + parts.clone().map(|p| p.keys.len()).sum::<usize>();
    cmd.arg(sha).arg(keys);
    for e in undo {
        cmd.arg(e.key());
    }
    for p in parts.clone() {
        for k in p.keys.iter() {
            cmd.arg(k);
        }
    }
    cmd.arg(micros_ceil(lease_ttl)).arg(undo.len());
    for e in undo {
        match e {
            Undo::Lease { member, .. } => cmd.arg("c").arg(member.as_str()),
            Undo::Refund { micros, .. } => cmd.arg("r").arg(*micros),
        };
    }
    for p in parts {
        for a in p.args.iter() {
            cmd.arg(a);
        }
    }
    cmd
}

/// The script's reply cut into one reply per part (`sizes`: each part's op count).
pub(super) fn split(
    reply: Value,
    sizes: impl Iterator<Item = usize> + Clone,
) -> Result<Vec<Value>, BadReply> {
    let Value::Array(items) = reply else {
        return Err(BadReply("not an array"));
    };
    if items.len() != sizes.clone().map(|n| n * 3).sum::<usize>() {
        return Err(BadReply("wrong length"));
    }
    let mut items = items.into_iter();
    Ok(sizes
        .map(|n| Value::Array(items.by_ref().take(n * 3).collect()))
        .collect())
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
    fn a_batch_is_give_backs_then_parts_in_order() {
        let mut n = Args::default();
        for v in [0, 7, 10, 1_234_567_890, u64::MAX] {
            n.push_num(v);
        }
        let got: Vec<&[u8]> = n.iter().collect();
        let want: [&[u8]; 5] = [b"0", b"7", b"10", b"1234567890", b"18446744073709551615"];
        assert_eq!(got, want);

        let ops = [
            OpSpec {
                op: Op::Rate {
                    key: "a".into(),
                    rate: Rate {
                        emission: Duration::from_micros(2),
                        burst: 0,
                    },
                    cost: 3,
                },
                enforce: true,
            },
            OpSpec {
                op: Op::Concurrency {
                    key: "b".into(),
                    max: 4,
                },
                enforce: false,
            },
        ];
        let group = [
            Sent {
                index: 0,
                key: "A".into(),
                lease: None,
            },
            Sent {
                index: 1,
                key: "B".into(),
                lease: Some("m1".into()),
            },
        ];
        let one = part(&ops, &group);
        let two = part(&ops, &group[1..]);
        assert_eq!((one.ops(), two.ops()), (2, 1));
        let undo = [Undo::Lease {
            key: "B".into(),
            member: "m0".into(),
        }];
        let cmd = batch_cmd(
            "sha",
            Duration::from_millis(5),
            &undo,
            [&one, &two].into_iter(),
        );
        let args: Vec<String> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Arg::Cursor => "<cursor>".into(),
            })
            .collect();
        let want = [
            "EVALSHA", "sha", "4", "B", "A", "B", "B", "5000", "1", "c", "m0", "2", "R", "2000",
            "1", "3", "c", "4", "m1", "1", "c", "4", "m1",
        ];
        assert_eq!(args, want);
    }

    #[test]
    fn a_batch_reply_is_cut_per_part() {
        let reply = Value::Array((0..9).map(Value::Int).collect());
        let parts = split(reply, [2, 0, 1].into_iter()).expect("split");
        let ints = |v: &Value| match v {
            Value::Array(items) => items.len(),
            _ => usize::MAX,
        };
        assert_eq!(parts.iter().map(ints).collect::<Vec<_>>(), [6, 0, 3]);
        assert_eq!(
            parts[2],
            Value::Array(vec![Value::Int(6), Value::Int(7), Value::Int(8)])
        );
        let short = Value::Array((0..8).map(Value::Int).collect());
        assert!(split(short, [2, 1].into_iter()).is_err());
        assert!(split(Value::Nil, [1].into_iter()).is_err());
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
