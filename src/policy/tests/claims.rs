//! Known clients and claims, the relay signal, match rules, and the HTTP-layer conditions.

use std::time::Duration;

use super::*;

const AKAMAI: &str = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p";

/// Two clients (the first claimed by User-Agent, the second by its headers) and a match rule
/// that flags a mismatching claim.
fn clients() -> Policy {
    policy(&format!(
        r#"[policy]
[[policy.clients]]
name = "example-sdk"
user_agent = "^ExampleSDK/"
ja4 = ["{JA4}"]
header_fp = ["h1_0123456789ab"]
h2 = ["{AKAMAI}"]

[[policy.clients]]
name = "stainless"
headers = ["x-stainless-lang", "x-stainless-os"]
ja3 = ["{JA3}"]

[[policy.rules]]
name = "client-mismatch"
key = ["claim", "ja4"]
limit = "match"
action = "flag"
[policy.rules.when]
claim_mismatch = true
"#
    ))
}

fn no_headers(_: &str) -> bool {
    false
}

fn stainless(name: &str) -> bool {
    name == "x-stainless-lang" || name == "x-stainless-os"
}

#[test]
fn a_claim_by_user_agent_is_compared_on_every_listed_layer() {
    let p = clients();
    let sdk = RequestFacts {
        user_agent: Some("ExampleSDK/1.2 (linux)"),
        header_fp: Some("h1_0123456789ab"),
        ..facts()
    };
    let c = p.claim(&sdk, &no_headers).expect("claimed");
    assert_eq!((p.client_name(&c), c.is_mismatch()), ("example-sdk", false));

    // Same headers, another TLS stack: the JA4 gives it away.
    let copy = RequestFacts {
        ja4: Some(JA4_OTHER),
        ..sdk
    };
    let c = p.claim(&copy, &no_headers).unwrap();
    assert_eq!(c.mismatch, Layers::JA4);
    assert_eq!(c.mismatch.join(), "ja4");

    // Another header order too, and HTTP/2 with a different SETTINGS frame.
    let h2 = crate::fingerprint::h2::akamai_hash("1:4096|0|0|m,p,s,a");
    let worse = RequestFacts {
        header_fp: Some("h2_ffffffffffff"),
        h2_fp: Some(&h2),
        ..copy
    };
    let c = p.claim(&worse, &no_headers).unwrap();
    let names: Vec<&str> = c.mismatch.names().collect();
    assert_eq!(names, ["ja4", "header_fp", "h2"]);
}

#[test]
fn absent_layers_and_unlisted_layers_are_not_compared() {
    let p = clients();
    // Plaintext listener (no JA4, no JA3), HTTP/1.1 (no h2): only the header fp is compared.
    let plain = RequestFacts {
        user_agent: Some("ExampleSDK/1.2"),
        ja4: None,
        ja3_hash: None,
        header_fp: Some("h1_0123456789ab"),
        h2_fp: None,
        ..facts()
    };
    assert!(!p.claim(&plain, &no_headers).unwrap().is_mismatch());
    // The second client lists only JA3: any JA4 and header fp pass.
    let f = RequestFacts {
        user_agent: Some("curl/8.0"),
        ja4: Some(JA4_OTHER),
        header_fp: Some("h1_ffffffffffff"),
        ..facts()
    };
    let c = p.claim(&f, &stainless).unwrap();
    assert_eq!((p.client_name(&c), c.is_mismatch()), ("stainless", false));
    let other_ja3 = RequestFacts {
        ja3_hash: Some("00000000000000000000000000000000"),
        ..f
    };
    assert_eq!(
        p.claim(&other_ja3, &stainless).unwrap().mismatch,
        Layers::JA3
    );
}

#[test]
fn headers_claim_only_when_all_are_present_and_the_first_client_wins() {
    let p = clients();
    let f = RequestFacts {
        user_agent: Some("curl/8.0"),
        ..facts()
    };
    assert_eq!(p.claim(&f, &no_headers), None);
    assert_eq!(p.claim(&f, &|n: &str| n == "x-stainless-lang"), None);
    assert!(p.claim(&f, &stainless).is_some());
    // Both claimed: the first in file order.
    let both = RequestFacts {
        user_agent: Some("ExampleSDK/1.2"),
        ..f
    };
    let c = p.claim(&both, &stainless).unwrap();
    assert_eq!(p.client_name(&c), "example-sdk");
}

#[test]
fn a_match_rule_flags_every_mismatching_request_without_a_counter() {
    let p = clients();
    let sdk = RequestFacts {
        user_agent: Some("ExampleSDK/1.2"),
        header_fp: Some("h1_0123456789ab"),
        ..facts()
    };
    let copy = RequestFacts {
        ja4: Some(JA4_OTHER),
        ..sdk
    };
    let with_claim = |f: RequestFacts<'static>| RequestFacts {
        claim: p.claim(&f, &no_headers),
        ..f
    };
    let honest = p.plan(&with_claim(sdk)).unwrap();
    assert!(honest.is_empty(), "{honest:?}");
    let plan = p.plan(&with_claim(copy)).unwrap();
    assert!(plan.ops.is_empty(), "a match rule asks no counter");
    let d = p.decide(&plan, &eval(Vec::new(), false));
    assert_eq!(d.verdict, Verdict::Flag);
    assert_eq!(d.hits.len(), 1);
    let h = &d.hits[0];
    assert_eq!(
        (&*h.rule, h.layer_key.as_str(), h.current, h.limit),
        (
            "client-mismatch",
            "client-mismatch|claim=example-sdk|ja4=t13d1715h2_5b57614c22b0_3d5424432f57",
            1,
            0
        )
    );
    // No claim at all: `claim_mismatch = true` does not hold.
    assert!(p.plan(&facts()).unwrap().is_empty());
}

#[test]
fn a_rejecting_match_rule_and_shadow_mode() {
    let text = "[policy]\n[[policy.rules]]\nname = \"relayed\"\nkey = [\"relay\", \"ip\"]\nlimit = \"match\"\nstatus = 403\n[policy.rules.when]\nrelay = true\n";
    let p = policy(text);
    let relayed = RequestFacts {
        relay: Some(true),
        ..facts()
    };
    let plan = p.plan(&relayed).unwrap();
    let d = p.decide(&plan, &eval(Vec::new(), false));
    assert_eq!(
        d.verdict,
        Verdict::Reject {
            status: 403,
            retry_after: Duration::ZERO
        }
    );
    assert_eq!(d.hits[0].layer_key, "relayed|relay=relay|ip=203.0.113.77");
    let shadow = policy(&text.replace("[policy]\n", "[policy]\nshadow = true\n"));
    let plan = shadow.plan(&relayed).unwrap();
    let d = shadow.decide(&plan, &eval(Vec::new(), false));
    assert_eq!((d.verdict, d.hits[0].shadow), (Verdict::Flag, true));
}

#[test]
fn relay_condition_and_key_part() {
    let p = keyed("\"relay\"", "[policy.rules.when]\nrelay = false\n");
    let direct = RequestFacts {
        relay: Some(false),
        ..facts()
    };
    assert_eq!(one_key(&p, &direct), "r|relay=direct|w0");
    // Relayed, or not measured: `relay = false` does not hold.
    for relay in [Some(true), None] {
        assert!(keys(&p, &RequestFacts { relay, ..facts() }).is_empty());
    }
    let any = keyed("\"relay\"", "");
    assert_eq!(one_key(&any, &facts()), "r|relay=-|w0");
}

#[test]
fn relay_gap_threshold() {
    let default = policy("[policy]\n");
    assert_eq!(default.relay_gap(), DEFAULT_RELAY_GAP);
    assert_eq!(default.is_relay(None), None);
    assert_eq!(
        default.is_relay(Some(Duration::from_millis(29))),
        Some(false)
    );
    assert_eq!(
        default.is_relay(Some(Duration::from_millis(30))),
        Some(true)
    );
    let tight = policy("[policy]\nrelay_gap = \"5ms\"\n");
    assert_eq!(tight.is_relay(Some(Duration::from_millis(6))), Some(true));
}

#[test]
fn header_fp_and_h2_conditions() {
    let h2 = crate::fingerprint::h2::akamai_hash(AKAMAI);
    let by_string = keyed(
        "\"ip\"",
        &format!("[policy.rules.when]\nh2 = [\"{AKAMAI}\"]\nheader_fp = [\"h2_0123456789ab\"]\n"),
    );
    let by_hash = keyed(
        "\"ip\"",
        &format!("[policy.rules.when]\nh2 = [\"{h2}\"]\nheader_fp = [\"h2_0123456789ab\"]\n"),
    );
    let hit = RequestFacts {
        header_fp: Some("h2_0123456789ab"),
        h2_fp: Some(&h2),
        ..facts()
    };
    for p in [&by_string, &by_hash] {
        assert_eq!(keys(p, &hit).len(), 1);
        let other_headers = RequestFacts {
            header_fp: Some("h2_ffffffffffff"),
            ..hit
        };
        assert!(keys(p, &other_headers).is_empty());
        let h1 = RequestFacts { h2_fp: None, ..hit };
        assert!(keys(p, &h1).is_empty());
    }
}

#[test]
fn claim_key_part() {
    let p = policy(&format!(
        "[policy]\n[[policy.clients]]\nname = \"sdk\"\nuser_agent = \"^ExampleSDK/\"\nja4 = [\"{JA4}\"]\n\
         [[policy.rules]]\nname = \"r\"\nkey = [\"claim\"]\nlimit = \"rate\"\nrate = \"10/1s\"\n"
    ));
    assert_eq!(one_key(&p, &facts()), "r|claim=none|w0");
    let f = RequestFacts {
        user_agent: Some("ExampleSDK/2"),
        ..facts()
    };
    let claimed = RequestFacts {
        claim: p.claim(&f, &no_headers),
        ..f
    };
    assert_eq!(one_key(&p, &claimed), "r|claim=sdk|w0");
}
