//! Key parts and layer keys; `when` conditions.

use super::*;

#[test]
fn key_part_account_and_anonymous() {
    let p = keyed("\"account\"", "");
    let f = facts();
    let id = f.account.unwrap().to_string();
    assert_eq!(one_key(&p, &f), format!("r|account={id}|w0"));
    let anon = RequestFacts { account: None, ..f };
    assert_eq!(one_key(&p, &anon), "r|account=anonymous|w0");
}

#[test]
fn key_part_ip_and_mapped_ip() {
    let p = keyed("\"ip\"", "");
    assert_eq!(one_key(&p, &facts()), "r|ip=203.0.113.77|w0");
    let mapped = RequestFacts {
        ip: ip("::ffff:203.0.113.77"),
        ..facts()
    };
    assert_eq!(one_key(&p, &mapped), "r|ip=203.0.113.77|w0");
}

#[test]
fn key_part_subnet_v4_v6_and_prefixes() {
    let p = keyed("\"subnet\", \"subnet/48\"", "");
    let v4 = facts();
    assert_eq!(
        one_key(&p, &v4),
        "r|subnet=203.0.113.0/24|subnet/48=203.0.113.0/24|w0"
    );
    let v6 = RequestFacts {
        ip: ip("2001:db8:aa:bb:1::9"),
        ..facts()
    };
    assert_eq!(
        one_key(&p, &v6),
        "r|subnet=2001:db8:aa:bb::/64|subnet/48=2001:db8:aa::/48|w0"
    );
    let mapped = RequestFacts {
        ip: ip("::ffff:198.51.100.9"),
        ..facts()
    };
    assert_eq!(
        one_key(&p, &mapped),
        "r|subnet=198.51.100.0/24|subnet/48=198.51.100.0/24|w0"
    );
}

#[test]
fn key_part_configured_v4_prefix() {
    let p = policy(
        "[policy.identity]\nsubnet_v4 = [24, 16]\n[[policy.rules]]\nname = \"r\"\n\
         key = [\"subnet/16\"]\nlimit = \"concurrency\"\nmax = 2\n",
    );
    assert_eq!(one_key(&p, &facts()), "r|subnet/16=203.0.0.0/16");
    let v6 = RequestFacts {
        ip: ip("2001:db8:aa:bb:1::9"),
        ..facts()
    };
    assert_eq!(one_key(&p, &v6), "r|subnet/16=2001:db8:aa:bb::/64");
}

#[test]
fn key_part_fingerprints_and_missing_values() {
    let p = keyed("\"ja3\", \"ja4\"", "");
    assert_eq!(one_key(&p, &facts()), format!("r|ja3={JA3}|ja4={JA4}|w0"));
    let none = RequestFacts {
        ja3_hash: None,
        ja4: None,
        ..facts()
    };
    assert_eq!(one_key(&p, &none), "r|ja3=-|ja4=-|w0");
}

#[test]
fn key_part_route_is_the_matched_entry() {
    let p = keyed(
        "\"route\"",
        "[policy.rules.when]\nroutes = [\"POST /v1/messages\", \"/v1/\"]\n",
    );
    assert_eq!(one_key(&p, &facts()), "r|route=POST /v1/messages|w0");
    let get = RequestFacts {
        method: "GET",
        path: "/v1/models",
        ..facts()
    };
    assert_eq!(one_key(&p, &get), "r|route=/v1/|w0");
}

#[test]
fn key_part_user_agent_plain_hashed_and_missing() {
    let p = keyed("\"user_agent\"", "");
    assert_eq!(one_key(&p, &facts()), "r|user_agent=python-httpx/0.27.0|w0");
    let pipe = RequestFacts {
        user_agent: Some("a|b"),
        ..facts()
    };
    let k = one_key(&p, &pipe);
    assert!(
        k.starts_with("r|user_agent=#") && k.len() == "r|user_agent=#".len() + 16 + 3,
        "{k}"
    );
    let long = "x".repeat(300);
    let lk = one_key(
        &p,
        &RequestFacts {
            user_agent: Some(&long),
            ..facts()
        },
    );
    assert!(lk.contains("=#"), "{lk}");
    let tag = RequestFacts {
        user_agent: Some("evil{tag}"),
        ..facts()
    };
    assert!(one_key(&p, &tag).contains("=#"));
    assert_eq!(
        one_key(
            &p,
            &RequestFacts {
                user_agent: None,
                ..facts()
            }
        ),
        "r|user_agent=-|w0"
    );
}

#[test]
fn condition_routes_method_and_prefix() {
    let p = keyed(
        "\"account\"",
        "[policy.rules.when]\nroutes = [\"POST /v1/messages\"]\n",
    );
    assert_eq!(keys(&p, &facts()).len(), 1);
    assert!(keys(
        &p,
        &RequestFacts {
            method: "GET",
            ..facts()
        }
    )
    .is_empty());
    assert!(keys(
        &p,
        &RequestFacts {
            path: "/v2/messages",
            ..facts()
        }
    )
    .is_empty());
    assert_eq!(
        keys(
            &p,
            &RequestFacts {
                path: "/v1/messages/batches",
                ..facts()
            }
        )
        .len(),
        1
    );
}

#[test]
fn condition_fingerprint_sets() {
    let p = keyed(
        "\"account\"",
        &format!("[policy.rules.when]\nja4 = [\"{JA4}\"]\nja3 = [\"{JA3}\"]\n"),
    );
    assert_eq!(keys(&p, &facts()).len(), 1);
    assert!(keys(
        &p,
        &RequestFacts {
            ja4: Some(JA4_OTHER),
            ..facts()
        }
    )
    .is_empty());
    assert!(keys(
        &p,
        &RequestFacts {
            ja4: None,
            ..facts()
        }
    )
    .is_empty());
    assert!(keys(
        &p,
        &RequestFacts {
            ja3_hash: None,
            ..facts()
        }
    )
    .is_empty());
}

#[test]
fn condition_cidrs() {
    let p = keyed(
        "\"account\"",
        "[policy.rules.when]\ncidrs = [\"203.0.113.0/24\", \"2001:db8::/32\"]\n",
    );
    assert_eq!(keys(&p, &facts()).len(), 1);
    assert_eq!(
        keys(
            &p,
            &RequestFacts {
                ip: ip("::ffff:203.0.113.1"),
                ..facts()
            }
        )
        .len(),
        1
    );
    assert_eq!(
        keys(
            &p,
            &RequestFacts {
                ip: ip("2001:db8:1::1"),
                ..facts()
            }
        )
        .len(),
        1
    );
    assert!(keys(
        &p,
        &RequestFacts {
            ip: ip("198.51.100.1"),
            ..facts()
        }
    )
    .is_empty());
}

#[test]
fn condition_user_agent_regex_and_missing_as_empty() {
    let p = keyed(
        "\"account\"",
        "[policy.rules.when]\nuser_agent = \"^python-httpx/\"\n",
    );
    assert_eq!(keys(&p, &facts()).len(), 1);
    assert!(keys(
        &p,
        &RequestFacts {
            user_agent: Some("curl/8"),
            ..facts()
        }
    )
    .is_empty());
    assert!(keys(
        &p,
        &RequestFacts {
            user_agent: None,
            ..facts()
        }
    )
    .is_empty());
    let empty = keyed("\"account\"", "[policy.rules.when]\nuser_agent = \"^$\"\n");
    assert_eq!(
        keys(
            &empty,
            &RequestFacts {
                user_agent: None,
                ..facts()
            }
        )
        .len(),
        1
    );
}

#[test]
fn condition_has_account() {
    let with = keyed("\"ip\"", "[policy.rules.when]\nhas_account = true\n");
    let without = keyed("\"ip\"", "[policy.rules.when]\nhas_account = false\n");
    let anon = RequestFacts {
        account: None,
        ..facts()
    };
    assert_eq!(keys(&with, &facts()).len(), 1);
    assert!(keys(&with, &anon).is_empty());
    assert!(keys(&without, &facts()).is_empty());
    assert_eq!(keys(&without, &anon).len(), 1);
}

#[test]
fn conditions_must_all_hold() {
    let p = keyed(
        "\"account\"",
        &format!(
            "[policy.rules.when]\nroutes = [\"/v1/\"]\nja4 = [\"{JA4}\"]\nhas_account = true\n"
        ),
    );
    assert_eq!(keys(&p, &facts()).len(), 1);
    assert!(keys(
        &p,
        &RequestFacts {
            path: "/health",
            ..facts()
        }
    )
    .is_empty());
}
