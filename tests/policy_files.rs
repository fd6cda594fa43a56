//! Policy files: one bad file per validation rule (tests/fixtures/policy/bad-*.toml), each
//! asserting its single issue's path, line and message; one file with several problems, all
//! reported at once; and the example policy, which must parse with zero issues and match the
//! copy in docs/policy.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use portcullis::policy::{parse_policy, Issue, Limit};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policy")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn issues(name: &str) -> Vec<Issue> {
    match parse_policy(&read(name)) {
        Ok(_) => panic!("{name}: parsed without issues"),
        Err(issues) => issues,
    }
}

/// The file has exactly one issue, at `line`, on `path`, whose text contains `needle`.
fn check_one(name: &str, line: usize, path: &str, needle: &str) {
    let found = issues(name);
    let all: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        found.len(),
        1,
        "{name}: expected one issue, got:\n{}",
        all.join("\n")
    );
    let i = &found[0];
    assert_eq!(i.line, Some(line), "{name}: {i}");
    assert_eq!(i.path, path, "{name}: {i}");
    assert!(
        i.to_string().contains(needle),
        "{name}: {i:?} lacks {needle:?}"
    );
    assert!(
        i.to_string().starts_with(&format!("line {line}: ")),
        "{name}: {i}"
    );
    // Fixtures put any would-be secret in a value containing DO-NOT-ECHO.
    assert!(
        !i.to_string().contains("DO-NOT-ECHO"),
        "{name}: echoed a secret: {i}"
    );
}

/// One test per bad fixture: (test name, file, line, path, text the issue contains). Also
/// defines `CASES`, the files covered, which `every_bad_fixture_has_a_test` checks.
macro_rules! bad_files {
    ($($test:ident, $file:literal, $line:literal, $path:literal, $needle:literal;)*) => {
        const CASES: &[&str] = &[$($file),*];
        $(
            #[test]
            fn $test() {
                check_one($file, $line, $path, $needle);
            }
        )*
    };
}

bad_files! {
    bad_syntax, "bad-syntax.toml", 2, "", "invalid TOML";
    bad_match_no_when, "bad-match-no-when.toml", 7, "policy.rules[0].limit", "a `match` rule needs a `when` condition";
    bad_match_max, "bad-match-max.toml", 8, "policy.rules[0].max", "`max` does not apply to limit = \"match\"";
    bad_claim_no_clients, "bad-claim-no-clients.toml", 10, "policy.rules[0].when.claim_mismatch", "no known clients to claim";
    bad_key_claim, "bad-key-claim.toml", 6, "policy.rules[0].key[0]", "key part `claim` needs known clients";
    bad_relay_gap, "bad-relay-gap.toml", 3, "policy.relay_gap", "relay_gap `1m` is out of range";
    bad_client_unclaimed, "bad-client-unclaimed.toml", 4, "policy.clients[0]", "nothing claims this client";
    bad_client_no_fingerprints, "bad-client-no-fingerprints.toml", 4, "policy.clients[0]", "no known fingerprints to compare";
    bad_client_name, "bad-client-name.toml", 5, "policy.clients[0].name", "bad client name `Example SDK`";
    bad_client_duplicate, "bad-client-duplicate.toml", 10, "policy.clients[1].name", "duplicate client name `sdk`";
    bad_client_header_fp, "bad-client-header-fp.toml", 7, "policy.clients[0].header_fp[0]", "bad header fingerprint `h3_0123456789ab`";
    bad_client_header, "bad-client-header.toml", 6, "policy.clients[0].headers[0]", "bad header name `x example`";
    bad_when_h2, "bad-when-h2.toml", 10, "policy.rules[0].when.h2[0]", "bad HTTP/2 fingerprint `52d84b11737`";
    bad_unknown_key, "bad-unknown-key.toml", 9, "policy.rules[0].brust", "unknown key `brust`";
    bad_unknown_key_secret, "bad-unknown-key-secret.toml", 3, "policy.identity.secret", "unknown key `secret`";
    bad_type, "bad-type.toml", 8, "policy.rules[0].max", "expected an integer, found a string";
    bad_policy_not_table, "bad-policy-not-table.toml", 2, "policy", "expected a table";
    bad_rules_type, "bad-rules-type.toml", 3, "policy.rules", "expected an array of tables";
    bad_version, "bad-version.toml", 3, "policy.version", "must be 1 to 128 printable ASCII characters";
    bad_headers_empty, "bad-headers-empty.toml", 3, "policy.identity.api_key_headers", "empty list";
    bad_header_name, "bad-header-name.toml", 5, "policy.identity.api_key_headers[1]", "not a valid header name";
    bad_header_duplicate, "bad-header-duplicate.toml", 5, "policy.identity.api_key_headers[1]", "header `x-api-key` is listed twice";
    bad_secret_both, "bad-secret-both.toml", 4, "policy.identity.secret_file", "give at most one of secret_env and secret_file";
    bad_secret_env, "bad-secret-env.toml", 3, "policy.identity.secret_env", "not an environment variable name";
    bad_secret_file, "bad-secret-file.toml", 3, "policy.identity.secret_file", "empty path";
    bad_subnet_prefix, "bad-subnet-prefix.toml", 3, "policy.identity.subnet_v4[1]", "4 is out of range";
    bad_subnet_prefix_duplicate, "bad-subnet-prefix-duplicate.toml", 3, "policy.identity.subnet_v6[1]", "prefix length 64 is listed twice";
    bad_subnet_empty, "bad-subnet-empty.toml", 3, "policy.identity.subnet_v4", "empty list";
    bad_account_id, "bad-account-id.toml", 3, "policy.lists.allow_accounts[0]", "not an account id";
    bad_ja4, "bad-ja4.toml", 3, "policy.lists.deny_ja4[0]", "bad JA4 `t13d1516h2_8daaf6152771`";
    bad_ja3, "bad-ja3.toml", 3, "policy.lists.deny_ja3[0]", "bad JA3 hash";
    bad_cidr, "bad-cidr.toml", 3, "policy.lists.deny_cidrs[0]", "bad CIDR `10.0.0.0/33`";
    bad_cidr_host_bits, "bad-cidr-host-bits.toml", 3, "policy.lists.allow_cidrs[0]", "`203.0.113.7/24` has host bits set";
    bad_deny_status, "bad-deny-status.toml", 3, "policy.lists.deny_status", "200 is out of range";
    bad_rule_name, "bad-rule-name.toml", 5, "policy.rules[0].name", "bad rule name `Account Rate`";
    bad_rule_name_missing, "bad-rule-name-missing.toml", 4, "policy.rules[0].name", "missing `name`";
    bad_rule_name_reserved, "bad-rule-name-reserved.toml", 5, "policy.rules[0].name", "reserved";
    bad_duplicate_rule, "bad-duplicate-rule.toml", 11, "policy.rules[1].name", "duplicate rule name `r`";
    bad_key_missing, "bad-key-missing.toml", 4, "policy.rules[0].key", "missing `key`";
    bad_key_empty, "bad-key-empty.toml", 6, "policy.rules[0].key", "empty key";
    bad_key_part, "bad-key-part.toml", 8, "policy.rules[0].key[1]", "unknown key part `acount`";
    bad_key_subnet_prefix, "bad-key-subnet-prefix.toml", 6, "policy.rules[0].key[0]", "`subnet/20` is not a configured subnet prefix";
    bad_key_duplicate, "bad-key-duplicate.toml", 6, "policy.rules[0].key[1]", "key part `account` is listed twice";
    bad_key_route, "bad-key-route.toml", 6, "policy.rules[0].key[0]", "key part `route` needs `when.routes`";
    bad_limit_missing, "bad-limit-missing.toml", 4, "policy.rules[0].limit", "missing `limit`";
    bad_limit, "bad-limit.toml", 7, "policy.rules[0].limit", "unknown limit `gcra`";
    bad_rate_missing, "bad-rate-missing.toml", 4, "policy.rules[0].rate", "missing `rate`";
    bad_rate, "bad-rate.toml", 10, "policy.rules[0].rate[1]", "bad rate `100 per hour`: no `/`";
    bad_rate_count, "bad-rate-count.toml", 8, "policy.rules[0].rate", "count must be at least 1";
    bad_rate_period, "bad-rate-period.toml", 8, "policy.rules[0].rate", "rate period `60d` is out of range";
    bad_rate_duration, "bad-rate-duration.toml", 8, "policy.rules[0].rate", "bad duration `1x`";
    bad_rate_too_fine, "bad-rate-too-fine.toml", 8, "policy.rules[0].rate", "finer than one per microsecond";
    bad_rate_duplicate_window, "bad-rate-duplicate-window.toml", 10, "policy.rules[0].rate[1]", "two windows of 1m on one rule";
    bad_rate_too_many_windows, "bad-rate-too-many-windows.toml", 8, "policy.rules[0].rate", "9 windows; at most 8";
    bad_burst, "bad-burst.toml", 9, "policy.rules[0].burst", "0 is out of range";
    bad_field_kind, "bad-field-kind.toml", 9, "policy.rules[0].max", r#"`max` does not apply to limit = "rate""#;
    bad_field_kind_window, "bad-field-kind-window.toml", 9, "policy.rules[0].window", r#"`window` does not apply to limit = "concurrency""#;
    bad_hide_headers_kind, "bad-hide-headers-kind.toml", 11, "policy.rules[0].hide_headers", r#"`hide_headers` does not apply to limit = "distinct""#;
    bad_max_missing, "bad-max-missing.toml", 4, "policy.rules[0].max", "missing `max`";
    bad_max, "bad-max.toml", 8, "policy.rules[0].max", "0 is out of range";
    bad_distinct_missing, "bad-distinct-missing.toml", 4, "policy.rules[0].window", "missing `window`";
    bad_distinct_count, "bad-distinct-count.toml", 8, "policy.rules[0].count", "unknown count `accounts`";
    bad_distinct_count_in_key, "bad-distinct-count-in-key.toml", 8, "policy.rules[0].count", "counting distinct `account` per key part `account` always gives 1";
    bad_window, "bad-window.toml", 10, "policy.rules[0].window", "window `90d` is out of range";
    bad_action, "bad-action.toml", 9, "policy.rules[0].action", "unknown action `block`";
    bad_status, "bad-status.toml", 9, "policy.rules[0].status", "302 is out of range";
    bad_status_action, "bad-status-action.toml", 10, "policy.rules[0].status", r#"`status` does not apply to action = "flag""#;
    bad_tarpit_missing, "bad-tarpit-missing.toml", 4, "policy.rules[0].tarpit", "missing `tarpit`";
    bad_tarpit_long, "bad-tarpit-long.toml", 10, "policy.rules[0].tarpit", "tarpit delay `1m` is out of range";
    bad_tarpit_action, "bad-tarpit-action.toml", 9, "policy.rules[0].tarpit", r#"`tarpit` does not apply to action = "reject""#;
    bad_route, "bad-route.toml", 10, "policy.rules[0].when.routes[0]", "bad route `POST v1/messages`";
    bad_route_method, "bad-route-method.toml", 10, "policy.rules[0].when.routes[0]", "bad method `post`";
    bad_when_empty, "bad-when-empty.toml", 10, "policy.rules[0].when.ja4", "empty list";
    bad_when_cidr, "bad-when-cidr.toml", 10, "policy.rules[0].when.cidrs[0]", "bad CIDR `2001:db8::/129`";
    bad_regex, "bad-regex.toml", 10, "policy.rules[0].when.user_agent", "bad regex";
    bad_when_unknown, "bad-when-unknown.toml", 10, "policy.rules[0].when.method", "unknown key `method`";
}

#[test]
fn every_bad_fixture_has_a_test() {
    let dir = fixture("");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bad-") && n != "bad-several.toml")
        .collect();
    let tested: BTreeSet<String> = CASES.iter().map(|s| s.to_string()).collect();
    assert_eq!(on_disk, tested);
}

#[test]
fn several_problems_are_reported_at_once() {
    let found = issues("bad-several.toml");
    let got: Vec<(Option<usize>, String)> = found.iter().map(|i| (i.line, i.to_string())).collect();
    let want: &[(usize, &str)] = &[
        (4, "policy.shadwo: unknown key `shadwo` (hint: did you mean `shadow`?)"),
        (7, "policy.identity.subnet_v4[1]: 40 is out of range (hint: between 8 and 32)"),
        (10, "policy.lists.deny_cidrs[1]: bad CIDR `nope`"),
        (16, "policy.rules[0].rate[1]: bad duration `1q`"),
        (17, "policy.rules[0].max: `max` does not apply to limit = \"rate\""),
        (20, "policy.rules[1].name: duplicate rule name `account-rate` (hint: the first rule with this name is at line 13)"),
        (21, "policy.rules[1].key[0]: unknown key part `ja5`"),
        (24, "policy.rules[1].max: expected an integer, found a string"),
        (27, "policy.rules[1].when.user_agent: bad regex"),
        (29, "policy.rules[2].name: missing `name`"),
        (29, "policy.rules[2].limit: missing `limit`"),
    ];
    for (line, text) in want {
        assert!(
            got.iter()
                .any(|(l, t)| *l == Some(*line) && t.contains(text)),
            "missing line {line}: {text}\ngot:\n{got:#?}"
        );
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
    let lines: Vec<_> = got.iter().map(|(l, _)| *l).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "issues come sorted by line");
}

#[test]
fn example_parses_with_zero_issues() {
    let text = read("example.toml");
    let policy = match parse_policy(&text) {
        Ok(p) => p,
        Err(issues) => panic!("{issues:#?}"),
    };
    assert_eq!(policy.version(), "example-1");
    assert!(!policy.shadow());
    assert_eq!(
        policy.identity().secret_env.as_deref(),
        Some("PORTCULLIS_ACCOUNT_SECRET")
    );
    let names: Vec<&str> = policy.rules().iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "account-rate",
            "account-concurrency",
            "anonymous-subnet",
            "ja4-accounts",
            "ja4-subnets",
            "ja4-budget",
            "subnet-accounts",
            "subnet-accounts-max",
            "subnet-budget",
            "account-subnets",
            "client-mismatch",
        ]
    );
    let clients: Vec<&str> = policy.clients().iter().map(|c| c.name()).collect();
    assert_eq!(clients, ["anthropic-python"]);
    let distinct = policy
        .rules()
        .iter()
        .filter(|r| matches!(r.limit(), Limit::Distinct { .. }));
    assert_eq!(distinct.count(), 5);
}

#[test]
fn example_is_embeddable_next_to_other_tables() {
    // config.toml carries the policy beside its own tables; those are not the parser's business.
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:8443\"\n\n{}",
        read("example.toml")
    );
    assert!(parse_policy(&text).is_ok());
}

#[test]
fn docs_carry_the_example_verbatim() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policy.md"))
            .unwrap();
    let example = read("example.toml");
    assert!(
        docs.contains(&example),
        "docs/policy.md's example differs from tests/fixtures/policy/example.toml"
    );
}
