//! A generator of sample evidence logs, for the screenshot script, the 1 GB benchmark and the
//! docs. Not part of the product interface (`#[doc(hidden)]`): `portcullis investigate` reads
//! evidence, it never makes it.
//!
//! The traffic follows `THREAT-MODEL.md`: a distillation campaign (hundreds of accounts, one
//! residential /24 each, two custom JA4s, ramping up), a relay ("hydra") cluster of accounts
//! packed on a few datacenter subnets, an enterprise NAT, a large population of honest SDK users
//! on the official client's JA4 (a hub), anonymous deny-list hits, and a few records with
//! hostile user agents and paths. The SDK users, the campaign and the relay cluster all claim
//! the official client (`anthropic-python`); the campaign and the relay contradict it with their
//! fingerprints (`claim_mismatch`). Deterministic for a given seed.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use crate::evidence::{timestamp, HitRecord, Record, SCHEMA_VERSION};

/// What to generate; stops at `records` or `bytes`, whichever comes first.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    pub records: u64,
    pub bytes: u64,
    pub seed: u64,
    pub start: SystemTime,
    pub span: Duration,
    /// Multiplies the number of accounts (and subnets) of every population: 1 gives ~3,800
    /// accounts; a large value makes a high-cardinality log for memory measurements.
    pub scale: u64,
}

impl Default for SampleSpec {
    fn default() -> Self {
        Self {
            records: 20_000,
            bytes: u64::MAX,
            seed: 7,
            // 2025-04-22T00:00:00Z
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_745_280_000),
            span: Duration::from_secs(7 * 86_400),
            scale: 1,
        }
    }
}

/// Records and bytes written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleStats {
    pub records: u64,
    pub bytes: u64,
}

/// SplitMix64: small, fast, good enough for sample data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn account(pop: u64, i: u64) -> String {
    format!(
        "{:016x}{:016x}",
        mix(pop * 1_000_003 + i),
        mix(!(pop * 7 + i))
    )
}

const SDK_JA4: &str = "t13d1516h2_8daaf6152771_e5627efa2ab1";
const CAMPAIGN_JA4: [&str; 2] = [
    "t13d1715h2_5b57614c22b0_3d5424432f57",
    "t13d1312h2_f57a46bbacb6_ab7e3b40a677",
];
const RELAY_JA4: &str = "t13d1517h2_8daaf6152771_b0da82dd1658";
const BROWSER_JA4: &str = "t13d1516h2_8daaf6152771_02713d6af862";
const SCANNER_JA4: &str = "t12d190800_d83cc789557e_7af1ed941c26";
const SDK_JA3: &str =
    "771,4865-4866-4867-49195-49199,0-23-65281-10-11-35-16-5-13-18-51-45-43-27,29-23-24,0";
const SDK_UA: &str = "anthropic-sdk-python/0.40.0 (CPython 3.12)";
/// The `[[policy.clients]]` name the SDK's traffic claims (by its x-stainless-* headers).
const SDK_CLAIM: &str = "anthropic-python";
const SDK_HEADER_FP: &str = "h2_aebb60bad449";
const SDK_H2: &str = "1:65536;2:0;4:65535;5:16384|16711681|0|m,a,s,p";
/// The campaign's own HTTP/2 stack under the SDK's copied headers.
const CAMPAIGN_H2: &str = "1:65536;2:0;3:1000;4:6291456|15663105|0|m,s,a,p";
const BROWSER_HEADER_FP: &str = "h2_3f9a0c1d2e4b";
const BROWSER_H2: &str = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p";

/// Relative rates of the six populations at `frac` of the span, `hour` of the day (UTC):
/// honest traffic follows working hours; the campaign starts at 30% of the span, ramps up over
/// the next 30% and runs around the clock.
fn rates(frac: f64, hour: f64) -> [f64; 6] {
    let day = 0.25 + 0.75 * (std::f64::consts::PI * (hour - 3.0) / 24.0).sin().powi(2);
    let campaign = if frac < 0.3 {
        0.0
    } else {
        1.1 * ((frac - 0.3) / 0.3).min(1.0)
    };
    [campaign, 0.3, 0.12 * day, 0.5 * day, 0.06, 0.01]
}

/// Slices of the span for the inverse-CDF time mapping.
const SLICES: usize = 4096;
/// Average bytes per generated line, to plan a byte budget.
const AVG_LINE: u64 = 730;

/// Writes sample evidence, one JSON record per line, in time order.
pub fn generate_sample(out: &mut dyn Write, spec: &SampleSpec) -> io::Result<SampleStats> {
    let mut rng = Rng(spec.seed);
    let planned = spec.records.min(spec.bytes / AVG_LINE).max(1);
    let span_ms = spec.span.as_millis().max(1) as f64;
    // Record density over time ∝ the sum of the rates: record i sits at the (i / planned)
    // quantile of that density, so volumes rise and fall the way the rates do.
    let mut cdf = Vec::with_capacity(SLICES);
    let mut acc = 0.0;
    for k in 0..SLICES {
        let f = (k as f64 + 0.5) / SLICES as f64;
        let hour = (f * span_ms / 3_600_000.0) % 24.0;
        acc += rates(f, hour).iter().sum::<f64>();
        cdf.push(acc);
    }
    let mut stats = SampleStats {
        records: 0,
        bytes: 0,
    };
    let mut line = Vec::with_capacity(2048);
    while stats.records < spec.records && stats.bytes < spec.bytes {
        let q = ((stats.records as f64 + 0.5) / planned as f64).min(1.0) * acc;
        let k = cdf.partition_point(|&c| c < q).min(SLICES - 1);
        let below = if k == 0 { 0.0 } else { cdf[k - 1] };
        let within = (q - below) / (cdf[k] - below).max(f64::MIN_POSITIVE);
        let frac = (k as f64 + within.clamp(0.0, 1.0)) / SLICES as f64;
        let offset_ms = (frac * span_ms) as u64;
        let t = spec.start + Duration::from_millis(offset_ms);
        let hour = (offset_ms / 3_600_000 % 24) as f64;
        let weights = rates(frac, hour);
        let total: f64 = weights.iter().sum();
        let mut pick = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut pop = weights.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                pop = i;
                break;
            }
            pick -= w;
        }
        let r = make(&mut rng, pop, t, stats.records + 1, spec.scale.max(1));
        line.clear();
        serde_json::to_writer(&mut line, &r).map_err(io::Error::other)?;
        line.push(b'\n');
        out.write_all(&line)?;
        stats.records += 1;
        stats.bytes += line.len() as u64;
    }
    Ok(stats)
}

fn hit(
    rule: &str,
    layer: String,
    current: u64,
    limit: u64,
    action: &str,
    shadow: bool,
) -> HitRecord {
    HitRecord {
        rule: rule.into(),
        layer_key: layer,
        current,
        limit,
        action: action.into(),
        shadow,
        retry_after_ms: if action == "reject" { 30_000 } else { 0 },
    }
}

fn make(rng: &mut Rng, pop: usize, t: SystemTime, id: u64, scale: u64) -> Record {
    let mut r = Record {
        v: SCHEMA_VERSION,
        ts: timestamp(t),
        decision_id: format!("{:016x}{:016x}", mix(id), id),
        policy_version: "2025-04-20.3".into(),
        verdict: "reject".into(),
        peer: String::new(),
        subnet: String::new(),
        account: None,
        sni: Some("api.example.com".into()),
        alpn: Some("h2".into()),
        ja3: Some(SDK_JA3.into()),
        ja3_hash: Some("773906b0efdefa24a7f2b8eb6985bf37".into()),
        ja4: Some(SDK_JA4.into()),
        ja4_r: None,
        // The SDK's stack; populations that are not the SDK replace what differs.
        header_fp: Some(SDK_HEADER_FP.into()),
        h2_fp: Some(SDK_H2.into()),
        ja4h: None,
        user_agent: Some(SDK_UA.into()),
        claim: Some(SDK_CLAIM.into()),
        claim_mismatch: Vec::new(),
        tcp_rtt_us: None,
        tls_rtt_us: None,
        relay: None,
        method: "POST".into(),
        path: "/v1/messages".into(),
        status: 429,
        hits: Vec::new(),
    };
    match pop {
        // Campaign: 600 accounts, one residential /24 each (hashed into 100.0.0.0/8), two custom
        // stacks copying the official client's headers: the claim holds, the TLS and HTTP/2
        // fingerprints contradict it.
        0 => {
            let a = rng.below(600 * scale);
            let h = mix(a ^ 0x5eed);
            let (x, y) = ((h >> 8) % 256, (h >> 16) % 256);
            r.peer = format!("100.{x}.{y}.{}", 2 + rng.below(250));
            r.subnet = format!("100.{x}.{y}.0/24");
            r.account = Some(account(1, a));
            r.ja4 = Some(CAMPAIGN_JA4[(a % 2) as usize].into());
            r.ja3_hash = Some("e7d705a3286e19ea42f587b344ee6865".into());
            r.h2_fp = Some(CAMPAIGN_H2.into());
            r.claim_mismatch = vec!["ja4".into(), "ja3".into(), "h2".into()];
            let layer = format!("ja4:{}", CAMPAIGN_JA4[(a % 2) as usize]);
            if rng.chance(0.55) {
                r.verdict = "flag".into();
                r.status = 200;
                r.hits
                    .push(hit("ja4-distinct-accounts", layer, 412, 200, "flag", false));
            } else {
                r.hits.push(hit(
                    "ja4-daily-budget",
                    layer,
                    50_400,
                    50_000,
                    "reject",
                    false,
                ));
            }
        }
        // Relay cluster: 120 accounts packed on four datacenter /24s, one impersonating stack.
        1 => {
            let a = rng.below(120 * scale);
            let net = a % 4;
            r.peer = format!("203.0.{}.{}", 113 + net, 10 + rng.below(40));
            r.subnet = format!("203.0.{}.0/24", 113 + net);
            r.account = Some(account(2, a));
            r.ja4 = Some(RELAY_JA4.into());
            r.user_agent = Some(SDK_UA.into());
            r.claim_mismatch = vec!["ja4".into()];
            let layer = format!("subnet:{}", r.subnet);
            r.hits.push(hit(
                "subnet-distinct-accounts",
                layer,
                31,
                20,
                "reject",
                false,
            ));
        }
        // Enterprise NAT: 40 accounts behind one /24, tarpitted by the subnet rate.
        2 => {
            let a = rng.below(40 * scale);
            r.peer = format!("198.51.100.{}", 1 + rng.below(8));
            r.subnet = "198.51.100.0/24".into();
            r.account = Some(account(3, a));
            r.ja4 = Some(BROWSER_JA4.into());
            r.user_agent = Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0".into());
            r.claim = None;
            r.header_fp = Some(BROWSER_HEADER_FP.into());
            r.h2_fp = Some(BROWSER_H2.into());
            r.verdict = "tarpit".into();
            r.status = 200;
            r.hits.push(hit(
                "subnet-rate",
                "subnet:198.51.100.0/24".into(),
                620,
                600,
                "tarpit",
                false,
            ));
        }
        // Honest SDK users: 3,000 accounts on the official JA4 (a hub), per-account limits and
        // a shadow rule under evaluation.
        3 => {
            let a = rng.below(3_000 * scale);
            let h = mix(a ^ 0xcafe);
            let (w, x, y) = (150 + h % 100, (h >> 8) % 256, (h >> 16) % 256);
            r.peer = format!("{w}.{x}.{y}.{}", 1 + rng.below(250));
            r.subnet = format!("{w}.{x}.{y}.0/24");
            r.account = Some(account(4, a));
            if rng.chance(0.3) {
                r.verdict = "flag".into();
                r.status = 200;
                r.hits.push(hit(
                    "ua-fingerprint-mismatch",
                    format!("ja4:{SDK_JA4}"),
                    1,
                    0,
                    "reject",
                    true,
                ));
            } else {
                let layer = format!("account:{}", account(4, a));
                r.hits
                    .push(hit("account-rate", layer, 61, 60, "reject", false));
            }
        }
        // Scanners without an API key on the deny list.
        4 => {
            let n = rng.below(6);
            r.peer = format!("192.0.2.{}", 10 + n);
            r.subnet = "192.0.2.0/24".into();
            r.ja4 = Some(SCANNER_JA4.into());
            r.ja3 = None;
            r.ja3_hash = None;
            r.user_agent = Some("python-requests/2.31".into());
            r.claim = None;
            r.alpn = Some("http/1.1".into());
            r.header_fp = Some("h1_0b5c7e1f2a93".into());
            r.h2_fp = None;
            r.verdict = "deny_list".into();
            r.status = 403;
            r.method = "GET".into();
            r.path = "/.env".into();
            r.hits.push(hit(
                "deny-list",
                "cidr:192.0.2.0/24".into(),
                1,
                0,
                "reject",
                false,
            ));
        }
        // Hostile strings: the report must show them as text, never run them.
        _ => {
            let a = rng.below(3);
            r.peer = "192.0.2.66".into();
            r.subnet = "192.0.2.0/24".into();
            r.account = Some(account(5, a));
            r.ja4 = Some(SCANNER_JA4.into());
            r.user_agent = Some("<script>alert(1)</script>".into());
            r.claim = None;
            r.header_fp = Some("h1_<b>x</b>".into());
            r.h2_fp = None;
            r.path = "/v1/messages?q=\"><img src=x onerror=alert(1)>".into();
            r.hits.push(hit(
                "account-rate",
                "account:<b>x</b>".into(),
                61,
                60,
                "reject",
                false,
            ));
        }
    }
    r
}
