//! The reader's view of one evidence line: only the fields the investigation uses, borrowed
//! from the line buffer where the JSON has no escapes. Unknown fields (newer schema versions)
//! are ignored; a missing required field makes the line malformed.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(crate) struct Line<'a> {
    #[allow(dead_code)] // read to require it; every version is accepted
    pub v: u32,
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow)]
    pub verdict: Cow<'a, str>,
    #[serde(borrow)]
    pub peer: Cow<'a, str>,
    #[serde(borrow)]
    pub subnet: Cow<'a, str>,
    #[serde(borrow, default)]
    pub account: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ja3: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ja3_hash: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ja4: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ja4_r: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub header_fp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub h2_fp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub claim: Option<Cow<'a, str>>,
    /// Layer names; usually absent (the writer omits an empty list), so no allocation.
    #[serde(default)]
    pub claim_mismatch: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    pub hits: Vec<Hit<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Hit<'a> {
    #[serde(borrow)]
    pub rule: Cow<'a, str>,
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    #[serde(default)]
    pub shadow: bool,
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC timestamp.
///
/// The writer's own format (`YYYY-MM-DDTHH:MM:SS[.fff]Z`) is parsed directly, because this runs
/// once per line over gigabytes; anything else goes through humantime.
pub(crate) fn parse_ts_ms(s: &str) -> Option<i64> {
    fast_ts(s.as_bytes()).or_else(|| {
        let t = humantime::parse_rfc3339_weak(s).ok()?;
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(d.as_millis()).ok()
    })
}

fn fast_ts(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let ms = match frac {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            let mut ms = 0i64;
            for i in 0..3 {
                ms = ms * 10 + digits.get(i).map_or(0, |&c| i64::from(c - b'0'));
            }
            ms
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 (seconds) of epoch milliseconds, for report output.
pub(crate) fn format_ms(ms: i64) -> String {
    let t = if ms >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs())
    } else {
        std::time::UNIX_EPOCH
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_ts_ms("2025-04-22T10:15:00.123Z"),
            Some(1_745_316_900_123)
        );
        assert_eq!(
            parse_ts_ms("2025-04-22T10:15:00.1Z"),
            Some(1_745_316_900_100)
        );
        assert_eq!(parse_ts_ms("2024-02-29T23:59:59Z"), Some(1_709_251_199_000));
        // Fallback path: a space separator (humantime "weak").
        assert_eq!(parse_ts_ms("2025-04-22 10:15:00Z"), Some(1_745_316_900_000));
        assert_eq!(parse_ts_ms("yesterday"), None);
        assert_eq!(parse_ts_ms("2025-13-22T10:15:00Z"), None);
        assert_eq!(format_ms(1_745_316_900_123), "2025-04-22T10:15:00Z");
    }
}
