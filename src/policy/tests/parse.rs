//! Parser shapes beyond the fixtures: inline tables, dotted keys, single-string lists.

use std::time::Duration;

use super::*;

#[test]
fn inline_tables_and_dotted_keys_read_like_sections() {
    let text = r#"
policy.version = "inline"
policy.identity.subnet_v4 = [24, 16]
policy.rules = [
  { name = "a", key = "account", limit = "rate", rate = "10/s", when = { has_account = true } },
  { name = "b", key = ["subnet/16"], limit = "concurrency", max = 2 },
]
"#;
    let p = policy(text);
    assert_eq!(p.version(), "inline");
    assert_eq!(p.identity().subnet_v4(), [24, 16]);
    assert_eq!(p.rules().len(), 2);
    assert_eq!(p.rules()[0].key(), [KeyPart::Account]);
    assert_eq!(p.rules()[0].when().has_account(), Some(true));
    match p.rules()[0].limit() {
        Limit::Rate(w) => {
            assert_eq!(w[0].period(), Duration::from_secs(1));
            assert_eq!(w[0].count().get(), 10);
            assert_eq!(w[0].burst().get(), 10);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.rules()[1].key(), [KeyPart::SubnetPrefix(16)]);
}

#[test]
fn issues_inside_inline_tables_have_lines() {
    let text = "[policy]\nrules = [\n  { name = \"a\", key = \"account\", limit = \"rate\", rate = \"10/s\" },\n  { name = \"b\", key = \"ip\", limit = \"rate\", rate = \"1/s\", brust = 2 },\n]\n";
    let issues = parse_policy(text).unwrap_err();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].line, Some(4));
    assert_eq!(issues[0].path, "policy.rules[1].brust");
}

#[test]
fn every_rule_is_checked_even_after_bad_ones() {
    let text = "[policy]\n\
        [[policy.rules]]\nname = \"A\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"1/s\"\n\
        [[policy.rules]]\nname = \"b\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"1/q\"\n\
        [[policy.rules]]\nname = \"c\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"1/s\"\naction = \"nope\"\n";
    let issues = parse_policy(text).unwrap_err();
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "policy.rules[0].name",
            "policy.rules[1].rate",
            "policy.rules[2].action"
        ]
    );
}

#[test]
fn a_policy_that_is_not_a_table() {
    let issues = parse_policy("policy = [1, 2]\n").unwrap_err();
    assert_eq!(
        issues[0].to_string(),
        "line 1: policy: expected a table (hint: write a [policy] section)"
    );
}

#[test]
fn syntax_errors_do_not_echo_the_file() {
    let issues = parse_policy("[policy]\nversion = \"sk-live-SECRET\n").unwrap_err();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].line, Some(2));
    assert!(!issues[0].to_string().contains("SECRET"), "{}", issues[0]);
}
