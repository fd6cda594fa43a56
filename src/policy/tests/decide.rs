//! Verdict precedence, shadow mode, RateLimit headers, the empty policy, issue text.

use std::time::Duration;

use super::*;

/// Four rules with every action, for the precedence tests.
fn actions() -> Policy {
    policy(
        "[policy]\n\
         [[policy.rules]]\nname = \"flag\"\nkey = [\"ip\"]\nlimit = \"rate\"\nrate = \"1/s\"\naction = \"flag\"\n\
         [[policy.rules]]\nname = \"slow\"\nkey = [\"ip\"]\nlimit = \"rate\"\nrate = \"2/s\"\naction = \"tarpit\"\ntarpit = \"3s\"\n\
         [[policy.rules]]\nname = \"slower\"\nkey = [\"ip\"]\nlimit = \"rate\"\nrate = \"3/s\"\naction = \"tarpit\"\ntarpit = \"5s\"\n\
         [[policy.rules]]\nname = \"no\"\nkey = [\"ip\"]\nlimit = \"rate\"\nrate = \"4/s\"\nstatus = 503\n\
         [[policy.rules]]\nname = \"no2\"\nkey = [\"ip\"]\nlimit = \"rate\"\nrate = \"5/s\"\n",
    )
}

#[test]
fn verdict_precedence() {
    let p = actions();
    let plan = p.plan(&facts()).unwrap();
    assert_eq!(plan.ops.len(), 5);
    let d = |o: Vec<Outcome>| p.decide(&plan, &eval(o, false));
    let ok = || allowed(1, 1);
    assert_eq!(
        d(vec![ok(), ok(), ok(), ok(), ok()]).verdict,
        Verdict::Allow
    );
    assert_eq!(
        d(vec![denied(1), ok(), ok(), ok(), ok()]).verdict,
        Verdict::Flag
    );
    let tar = d(vec![denied(1), denied(1), denied(1), ok(), ok()]);
    assert_eq!(tar.verdict, Verdict::Tarpit(Duration::from_secs(5)));
    assert_eq!(tar.hits.len(), 3);
    let rej = d(vec![denied(1), denied(1), ok(), denied(2), denied(7)]);
    assert_eq!(
        rej.verdict,
        Verdict::Reject {
            status: 503,
            retry_after: Duration::from_secs(7)
        }
    );
    let names: Vec<&str> = rej.hits.iter().map(|h| &*h.rule).collect();
    assert_eq!(names, ["flag", "slow", "no", "no2"]);
    let h = &rej.hits[2];
    assert_eq!(
        (h.current, h.limit, h.layer_key.as_str()),
        (11, 10, "no|ip=203.0.113.77|w0")
    );
    let only_second = d(vec![ok(), ok(), ok(), ok(), denied(2)]);
    assert_eq!(
        only_second.verdict,
        Verdict::Reject {
            status: 429,
            retry_after: Duration::from_secs(2)
        }
    );
}

#[test]
fn per_rule_shadow_is_recorded_not_enforced() {
    let p = keyed("\"account\"", "shadow = true\n");
    let plan = p.plan(&facts()).unwrap();
    assert!(!plan.ops[0].enforce);
    let d = p.decide(&plan, &eval(vec![denied(3)], false));
    assert_eq!(d.verdict, Verdict::Flag);
    assert!(d.hits[0].shadow);
    assert_eq!(d.hits[0].action, Action::Reject { status: 429 });
}

#[test]
fn global_shadow_never_blocks() {
    let p = policy(
        "[policy]\nshadow = true\n[[policy.rules]]\nname = \"r\"\nkey = [\"account\"]\n\
         limit = \"rate\"\nrate = \"1/s\"\n",
    );
    let plan = p.plan(&facts()).unwrap();
    assert!(plan.ops.iter().all(|o| !o.enforce));
    let d = p.decide(&plan, &eval(vec![denied(1)], false));
    assert_eq!(d.verdict, Verdict::Flag);
    assert!(d.hits.iter().all(|h| h.shadow));
}

#[test]
fn ratelimit_headers_from_the_tightest_visible_rate_layer() {
    let p = policy(
        "[policy]\n\
         [[policy.rules]]\nname = \"minute\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = [\"60/1m\", \"2000/1d\"]\n\
         [[policy.rules]]\nname = \"hidden\"\nkey = [\"ip\"]\nlimit = \"rate\"\nrate = \"5/1s\"\nhide_headers = true\n\
         [[policy.rules]]\nname = \"watch\"\nkey = [\"ja4\"]\nlimit = \"rate\"\nrate = \"5/1s\"\naction = \"flag\"\n\
         [[policy.rules]]\nname = \"inflight\"\nkey = [\"account\"]\nlimit = \"concurrency\"\nmax = 1\n",
    );
    let plan = p.plan(&facts()).unwrap();
    assert_eq!(plan.ops.len(), 5);
    let rl = |o: Vec<Outcome>| p.decide(&plan, &eval(o, false)).ratelimit;
    let h = rl(vec![
        allowed(12, 30),
        allowed(1500, 3600),
        allowed(0, 1),
        allowed(0, 1),
        allowed(0, 0),
    ])
    .unwrap();
    assert_eq!(h.policy, "\"minute\";q=60;w=60");
    assert_eq!(h.ratelimit, "\"minute\";r=12;t=30");
    let h = rl(vec![
        allowed(12, 30),
        allowed(3, 3600),
        allowed(0, 1),
        allowed(0, 1),
        allowed(0, 0),
    ])
    .unwrap();
    assert_eq!(h.policy, "\"minute\";q=2000;w=86400");
    assert_eq!(h.ratelimit, "\"minute\";r=3;t=3600");
    let h = rl(vec![
        denied(2),
        allowed(3, 3600),
        allowed(0, 1),
        allowed(0, 1),
        allowed(0, 0),
    ])
    .unwrap();
    assert_eq!(h.ratelimit, "\"minute\";r=0;t=2");
    let tie = rl(vec![
        allowed(3, 10),
        allowed(3, 3600),
        allowed(0, 1),
        allowed(0, 1),
        allowed(0, 0),
    ])
    .unwrap();
    assert_eq!(
        tie.ratelimit, "\"minute\";r=3;t=3600",
        "a tie goes to the longer wait"
    );
}

#[test]
fn ratelimit_headers_absent_without_visible_rate_layers() {
    let hidden = keyed("\"account\"", "hide_headers = true\n");
    let plan = hidden.plan(&facts()).unwrap();
    assert_eq!(
        hidden
            .decide(&plan, &eval(vec![allowed(1, 1)], false))
            .ratelimit,
        None
    );
    let conc = policy(
        "[policy]\n[[policy.rules]]\nname = \"c\"\nkey = [\"account\"]\nlimit = \"concurrency\"\nmax = 2\n",
    );
    let plan = conc.plan(&facts()).unwrap();
    assert_eq!(
        conc.decide(&plan, &eval(vec![allowed(1, 0)], false))
            .ratelimit,
        None
    );
}

#[test]
fn empty_policy_allows_everything() {
    let p = parse_policy("[server]\nlisten = \"x\"\n").unwrap();
    assert_eq!(p.version(), "unversioned");
    assert!(!p.shadow());
    assert!(p.rules().is_empty());
    let plan = p.plan(&facts()).unwrap();
    assert!(plan.is_empty());
    assert_eq!(
        p.decide(&plan, &eval(vec![], false)).verdict,
        Verdict::Allow
    );
    assert_eq!(
        p.identity().api_key_headers(),
        ["x-api-key", "authorization"]
    );
    assert_eq!(p.identity().subnet_v6(), [64, 48]);
}

#[test]
fn issue_display_is_stable() {
    let i = Issue {
        path: "policy.rules[2].rate[1]".into(),
        line: Some(14),
        message: "bad rate `6/0x`".into(),
        hint: Some("write COUNT/PERIOD".into()),
    };
    assert_eq!(
        i.to_string(),
        "line 14: policy.rules[2].rate[1]: bad rate `6/0x` (hint: write COUNT/PERIOD)"
    );
    let bare = Issue {
        path: String::new(),
        line: None,
        message: "m".into(),
        hint: None,
    };
    assert_eq!(bare.to_string(), "m");
}
