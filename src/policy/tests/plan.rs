//! Lists before rules; windows → ops; distinct members.

use std::time::Duration;

use super::*;
use crate::limit::{Op, Rate};

fn listed(lists: &str) -> Policy {
    policy(&format!(
        "[policy]\n[policy.lists]\n{lists}\n[[policy.rules]]\nname = \"r\"\n\
         key = [\"account\"]\nlimit = \"rate\"\nrate = \"10/1s\"\n"
    ))
}

#[test]
fn deny_list_beats_allow_list_and_allow_skips_rules() {
    let id = facts().account.unwrap();
    let allow_only = listed(&format!("allow_accounts = [\"{id}\"]"));
    assert_eq!(allow_only.plan(&facts()).unwrap_err(), Early::Allow);
    let both = listed(&format!(
        "allow_accounts = [\"{id}\"]\ndeny_ja4 = [\"{JA4}\"]\ndeny_status = 451"
    ));
    match both.plan(&facts()) {
        Err(Early::Deny(hit)) => {
            assert_eq!(&*hit.rule, "deny-list");
            assert_eq!(hit.layer_key, format!("deny-list|ja4={JA4}"));
            assert_eq!(hit.action, Action::Reject { status: 451 });
            assert!(!hit.shadow);
            let d = Early::Deny(hit).into_decision();
            assert_eq!(
                d.verdict,
                Verdict::Reject {
                    status: 451,
                    retry_after: Duration::ZERO
                }
            );
        }
        other => panic!("{other:?}"),
    }
    // Not listed: the rules apply.
    assert_eq!(
        keys(
            &both,
            &RequestFacts {
                ja4: Some(JA4_OTHER),
                account: None,
                ..facts()
            }
        )
        .len(),
        1
    );
}

#[test]
fn deny_lists_by_each_kind() {
    let id = facts().account.unwrap();
    let cases = [
        (
            format!("deny_accounts = [\"{id}\"]"),
            format!("deny-list|account={id}"),
        ),
        (
            format!("deny_ja3 = [\"{}\"]", JA3.to_uppercase()),
            format!("deny-list|ja3={JA3}"),
        ),
        (
            "deny_cidrs = [\"203.0.113.0/24\"]".to_string(),
            "deny-list|cidr=203.0.113.0/24".into(),
        ),
    ];
    for (list, key) in cases {
        match listed(&list).plan(&facts()) {
            Err(Early::Deny(hit)) => {
                assert_eq!(hit.layer_key, key);
                assert_eq!(hit.action, Action::Reject { status: 403 });
            }
            other => panic!("{list}: {other:?}"),
        }
    }
    let allow_net = listed("allow_cidrs = [\"203.0.113.77\"]");
    assert_eq!(allow_net.plan(&facts()).unwrap_err(), Early::Allow);
}

#[test]
fn global_shadow_deny_list_is_recorded_not_enforced() {
    let text = format!(
        "[policy]\nshadow = true\n[policy.lists]\ndeny_ja4 = [\"{JA4}\"]\n[[policy.rules]]\n\
         name = \"r\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"10/1s\"\n"
    );
    let p = policy(&text);
    let plan = p.plan(&facts()).unwrap();
    assert_eq!(plan.ops.len(), 1);
    assert!(!plan.ops[0].enforce);
    let d = p.decide(&plan, &eval(vec![allowed(5, 1)], false));
    assert_eq!(d.verdict, Verdict::Flag);
    assert_eq!(d.hits.len(), 1);
    assert!(d.hits[0].shadow);
    assert_eq!(d.ratelimit, None, "shadow limits are not advertised");
}

#[test]
fn windows_become_ops() {
    let p = policy(
        "[policy]\n[[policy.rules]]\nname = \"a\"\nkey = [\"account\"]\nlimit = \"rate\"\n\
         rate = [\"60/1m\", \"2000/d\"]\nburst = 20\n\
         [[policy.rules]]\nname = \"c\"\nkey = [\"account\"]\nlimit = \"concurrency\"\nmax = 4\n\
         [[policy.rules]]\nname = \"d\"\nkey = [\"ja4\"]\nlimit = \"distinct\"\ncount = \"account\"\n\
         max = 500\nwindow = \"1h\"\naction = \"flag\"\n",
    );
    let f = facts();
    let plan = p.plan(&f).unwrap();
    let id = f.account.unwrap();
    let ops: Vec<&Op> = plan.ops.iter().map(|o| &o.op).collect();
    assert_eq!(
        ops,
        vec![
            &Op::Rate {
                key: format!("a|account={id}|w0"),
                rate: Rate {
                    emission: Duration::from_secs(1),
                    burst: 20
                },
                cost: 1
            },
            &Op::Rate {
                key: format!("a|account={id}|w1"),
                rate: Rate {
                    emission: Duration::from_millis(43_200),
                    burst: 2000
                },
                cost: 1
            },
            &Op::Concurrency {
                key: format!("c|account={id}"),
                max: 4
            },
            &Op::Distinct {
                key: format!("d|ja4={JA4}"),
                member: id.as_u64(),
                max: 500,
                window: Duration::from_secs(3600)
            },
        ]
    );
    let enforce: Vec<bool> = plan.ops.iter().map(|o| o.enforce).collect();
    assert_eq!(
        enforce,
        [true, true, true, false],
        "flag rules never enforce"
    );
    // Nothing to count without an account: no distinct op.
    let anon = p.plan(&RequestFacts { account: None, ..f }).unwrap();
    assert_eq!(anon.ops.len(), 3);
}

#[test]
fn distinct_members_are_stable_hashes() {
    let p = policy(
        "[policy]\n[[policy.rules]]\nname = \"d\"\nkey = [\"account\"]\nlimit = \"distinct\"\n\
         count = \"subnet\"\nmax = 3\nwindow = \"1d\"\n",
    );
    let member = |f: &RequestFacts<'_>| match &p.plan(f).unwrap().ops[0].op {
        Op::Distinct { member, .. } => *member,
        other => panic!("{other:?}"),
    };
    let a = member(&facts());
    assert_eq!(
        a,
        member(&RequestFacts {
            ip: ip("203.0.113.5"),
            ..facts()
        }),
        "same /24"
    );
    assert_eq!(
        a,
        member(&RequestFacts {
            ip: ip("::ffff:203.0.113.5"),
            ..facts()
        })
    );
    assert_ne!(
        a,
        member(&RequestFacts {
            ip: ip("203.0.114.5"),
            ..facts()
        })
    );
    // Pinned: SipHash-2-4 under the member key of (203, 0, 113, 0, 24). A fleet shares HLLs
    // across proxy versions, so this must never change.
    assert_eq!(a, PINNED_SUBNET_MEMBER);
}

const PINNED_SUBNET_MEMBER: u64 = 0x9afb_150d_b947_e2ba;

#[test]
fn siphash24_matches_the_reference_vector() {
    // Aumasson and Bernstein, "SipHash: a fast short-input PRF", Appendix A: key 00..0f,
    // message 00..0e (15 bytes).
    let msg: Vec<u8> = (0u8..15).collect();
    let h = crate::policy::decide::siphash24(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908, &msg);
    assert_eq!(h, 0xa129_ca61_49be_45e5);
}

#[test]
fn facts_key_matches_only_the_same_facts() {
    let base = facts();
    let key = FactsKey::new(&base);
    assert!(key.matches(&base));
    let h2 = "abcdef012345";
    let claim = Claim {
        client: 0,
        mismatch: Layers::JA4,
    };
    // Every fact on its own: a plan made for `base` is not the plan of any of these.
    let others = [
        RequestFacts {
            account: None,
            ..base
        },
        RequestFacts {
            ip: ip("203.0.113.78"),
            ..base
        },
        RequestFacts {
            ja3_hash: None,
            ..base
        },
        RequestFacts {
            ja4: Some(JA4_OTHER),
            ..base
        },
        RequestFacts {
            method: "GET",
            ..base
        },
        RequestFacts {
            path: "/v1/messages/count_tokens",
            ..base
        },
        RequestFacts {
            user_agent: Some("python-httpx/0.28.0"),
            ..base
        },
        RequestFacts {
            header_fp: Some("h1_0123456789ab"),
            ..base
        },
        RequestFacts {
            h2_fp: Some(h2),
            ..base
        },
        RequestFacts {
            claim: Some(claim),
            ..base
        },
        RequestFacts {
            relay: Some(false),
            ..base
        },
    ];
    for (i, other) in others.iter().enumerate() {
        assert!(!key.matches(other), "fact {i} differs");
        assert!(FactsKey::new(other).matches(other));
    }
}
