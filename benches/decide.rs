//! Decision-path cost of the pure policy for one request: `plan` (lists, conditions, layer keys,
//! members) and `decide` (hits, verdict, RateLimit headers), with a fabricated evaluation in
//! which every layer is allowed. The store's share is `benches/limit.rs`; together the target is
//! < 2 µs for 10 layers.
//!
//! - `ten_layers`: 10 ops from 8 rules covering every kind and most key parts (6 rate windows,
//!   2 distinct, 2 concurrency), routes, a user-agent regex, non-empty lists that miss;
//! - `example`: the example policy (docs/policy.md): 11 ops from 9 matching rules;
//! - `claim`: `Policy::claim` with the example policy's known client, per request where the
//!   policy lists clients: an SDK request (claimed by User-Agent, consistent), a copy
//!   (claimed by its headers, mismatching) and a request that claims nothing.
//!
//! Run: `cargo bench --bench decide -- --warm-up-time 1 --measurement-time 3`

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::limit::{Evaluation, Lease, Outcome};
use portcullis::policy::identity::account_id;
use portcullis::policy::{parse_policy, Policy, RequestFacts};

const TEN_LAYERS: &str = r#"
[policy]
version = "bench"
[policy.lists]
deny_cidrs = ["198.51.100.0/24", "2001:db8:dead::/48"]
allow_accounts = ["00000000000000000000000000000000"]
[[policy.rules]]
name = "account-rate"
key = ["account"]
limit = "rate"
rate = ["300/1m", "50000/1d"]
burst = 100
[[policy.rules]]
name = "route-rate"
key = ["account", "route"]
limit = "rate"
rate = ["60/1m", "5000/1d"]
[policy.rules.when]
routes = ["POST /v1/messages", "/v1/"]
[[policy.rules]]
name = "subnet-budget"
key = ["subnet/48"]
limit = "rate"
rate = ["2000/1m", "400000/1d"]
[[policy.rules]]
name = "ja4-accounts"
key = ["ja4"]
limit = "distinct"
count = "account"
max = 2500
window = "1d"
action = "flag"
[[policy.rules]]
name = "account-subnets"
key = ["account"]
limit = "distinct"
count = "subnet"
max = 5
window = "7d"
action = "flag"
[[policy.rules]]
name = "account-concurrency"
key = ["account"]
limit = "concurrency"
max = 64
[[policy.rules]]
name = "sdk-concurrency"
key = ["ja4", "user_agent"]
limit = "concurrency"
max = 1000
[policy.rules.when]
user_agent = "^python-httpx/"
has_account = true
[[policy.rules]]
name = "never-matches"
key = ["ip"]
limit = "rate"
rate = "1/1s"
[policy.rules.when]
cidrs = ["192.0.2.0/24"]
"#;

fn policy(text: &str) -> Policy {
    match parse_policy(text) {
        Ok(p) => p,
        Err(issues) => panic!("bench policy does not parse: {issues:?}"),
    }
}

fn all_allowed(n: usize) -> Evaluation {
    Evaluation {
        outcomes: vec![
            Outcome::Allowed {
                remaining: 42,
                reset: Duration::from_secs(30),
            };
            n
        ],
        blocked: false,
        lease: Lease::none(),
    }
}

fn bench_policy(c: &mut Criterion, name: &str, p: &Policy, want_ops: usize) {
    let facts = RequestFacts {
        account: Some(account_id(b"bench-secret", "sk-bench-0001")),
        ip: "203.0.113.77".parse().expect("literal address"),
        ja3_hash: Some("e7d705a3286e19ea42f587b344ee6865"),
        ja4: Some("t13d1516h2_8daaf6152771_e5627efa2ab1"),
        method: "POST",
        path: "/v1/messages",
        user_agent: Some("python-httpx/0.27.0"),
        header_fp: None,
        h2_fp: None,
        claim: None,
        relay: None,
    };
    let plan = p.plan(&facts).expect("not listed");
    assert_eq!(plan.ops.len(), want_ops, "{name}: layers planned");
    let eval = all_allowed(plan.ops.len());
    assert!(p.decide(&plan, &eval).ratelimit.is_some());

    let mut g = c.benchmark_group(name);
    g.bench_function("plan", |b| b.iter(|| black_box(p).plan(black_box(&facts))));
    g.bench_function("decide", |b| {
        b.iter(|| black_box(p).decide(black_box(&plan), black_box(&eval)))
    });
    g.bench_function("plan_decide", |b| {
        b.iter(|| {
            let plan = black_box(p).plan(black_box(&facts)).expect("not listed");
            p.decide(&plan, black_box(&eval))
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_policy(c, "ten_layers", &policy(TEN_LAYERS), 10);
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/policy/example.toml"
    ))
    .expect("example policy");
    let example = policy(&example);
    bench_policy(c, "example", &example, 11);
    bench_claim(c, &example);
}

fn bench_claim(c: &mut Criterion, p: &Policy) {
    let mut headers = http::HeaderMap::new();
    for name in [
        "x-stainless-lang",
        "x-stainless-package-version",
        "x-stainless-os",
    ] {
        headers.insert(name, http::HeaderValue::from_static("x"));
    }
    let has = |name: &str| headers.contains_key(name);
    let none = |_: &str| false;
    let base = RequestFacts {
        account: Some(account_id(b"bench-secret", "sk-bench-0001")),
        ip: "203.0.113.77".parse().expect("literal address"),
        ja3_hash: Some("304734bb1c086c3453b387400cf83f11"),
        ja4: Some("t13d1812h1_85036bcba153_d41ae481755e"),
        method: "POST",
        path: "/v1/messages",
        user_agent: Some("Anthropic/Python 2.12.0"),
        header_fp: Some("h1_aebb60bad449"),
        h2_fp: None,
        claim: None,
        relay: Some(false),
    };
    let copy = RequestFacts {
        user_agent: Some("curl/7.88.1"),
        ja4: Some("t13d3112h1_e8f1e7e78f70_6bebaf5329ac"),
        ..base
    };
    let other = RequestFacts {
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"),
        ..copy
    };
    assert!(p.claim(&base, &has).is_some_and(|c| !c.is_mismatch()));
    assert!(p.claim(&copy, &has).is_some_and(|c| c.is_mismatch()));
    assert!(p.claim(&other, &none).is_none());
    let mut g = c.benchmark_group("claim");
    g.bench_function("sdk", |b| {
        b.iter(|| black_box(p).claim(black_box(&base), &has))
    });
    g.bench_function("copy", |b| {
        b.iter(|| black_box(p).claim(black_box(&copy), &has))
    });
    g.bench_function("none", |b| {
        b.iter(|| black_box(p).claim(black_box(&other), &none))
    });
    g.finish();
}

criterion_group!(decide, benches);
criterion_main!(decide);
