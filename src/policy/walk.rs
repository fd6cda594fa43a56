//! The schema walk: reads a `toml_edit` tree (which keeps byte spans) key by key, so that every
//! problem is reported with its TOML path and 1-based line, and none stops the others.
//!
//! Why not serde with `#[serde(deny_unknown_fields)]`? serde stops at the first unknown key or
//! type error, and its errors carry no path into arrays of tables. Here each table is read
//! through a [`TableReader`]: every getter records its key as known and checks the value's type;
//! [`TableReader::finish`] then reports *every* key nobody asked for, each with its own line and a
//! "did you mean" hint. That is deliberately stronger than `deny_unknown_fields`. The readers
//! fill the raw structs of [`super::raw`]; semantic checks happen later in [`super::validate`].

use std::ops::Range;

use toml_edit::{Item, TableLike, Value};

use super::Issue;

/// Byte offset → 1-based line.
#[derive(Debug)]
pub(crate) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    pub(crate) fn line(&self, span: Option<Range<usize>>) -> Option<usize> {
        let start = span?.start;
        Some(self.starts.partition_point(|&s| s <= start))
    }
}

/// Where the issues go while a file is read and validated.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) lines: Lines,
    pub(crate) issues: Vec<Issue>,
}

impl Ctx {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            lines: Lines::new(text),
            issues: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        path: &str,
        line: Option<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.issues.push(Issue {
            path: path.to_string(),
            line,
            message: message.into(),
            hint,
        });
    }
}

/// A value from the file and where it was: its TOML path and line.
#[derive(Debug, Clone)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) path: String,
    pub(crate) line: Option<usize>,
}

impl<T> Spanned<T> {
    /// Reports a problem with this value.
    pub(crate) fn issue(&self, ctx: &mut Ctx, message: impl Into<String>, hint: Option<String>) {
        ctx.push(&self.path, self.line, message, hint);
    }
}

/// A list read from the file: the list itself (path, line) and its elements (each with its own).
pub(crate) type SpannedList<T> = Spanned<Vec<Spanned<T>>>;

/// Reads one table (a `[header]` table, an inline table or a dotted-key table).
pub(crate) struct TableReader<'a> {
    table: &'a dyn TableLike,
    pub(crate) path: String,
    /// The table's own line (its header), or the line of the key that opened it.
    pub(crate) line: Option<usize>,
    known: Vec<&'static str>,
    /// Keys present with the wrong type (already reported): not "missing" as well.
    ill_typed: Vec<&'static str>,
}

/// What a key name is expected to hold, for type messages.
fn found(item: &Item) -> &'static str {
    match item {
        Item::Value(Value::String(_)) => "a string",
        Item::Value(Value::Integer(_)) => "an integer",
        Item::Value(Value::Float(_)) => "a float",
        Item::Value(Value::Boolean(_)) => "a boolean",
        Item::Value(Value::Datetime(_)) => "a date-time",
        Item::Value(Value::Array(_)) => "an array",
        Item::Value(Value::InlineTable(_)) | Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::None => "nothing",
    }
}

fn value_found(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

impl<'a> TableReader<'a> {
    pub(crate) fn new(table: &'a dyn TableLike, path: String, line: Option<usize>) -> Self {
        Self {
            table,
            path,
            line,
            known: Vec::new(),
            ill_typed: Vec::new(),
        }
    }

    /// Keys that were present but of the wrong type.
    pub(crate) fn ill_typed(&self) -> Vec<&'static str> {
        self.ill_typed.clone()
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The item under `key` (recorded as known), its path and its line.
    fn item(&mut self, ctx: &Ctx, key: &'static str) -> Option<(&'a Item, String, Option<usize>)> {
        self.known.push(key);
        let (k, item) = self.table.get_key_value(key)?;
        let line = ctx
            .lines
            .line(item.span())
            .or_else(|| ctx.lines.line(k.span()))
            .or(self.line);
        Some((item, self.child_path(key), line))
    }

    fn type_issue(ctx: &mut Ctx, path: &str, line: Option<usize>, want: &str, got: &str) {
        ctx.push(path, line, format!("expected {want}, found {got}"), None);
    }

    /// Reports a whole-value type error on `key`.
    fn wrong_type(
        &mut self,
        ctx: &mut Ctx,
        key: &'static str,
        path: &str,
        line: Option<usize>,
        want: &str,
        got: &str,
    ) {
        self.ill_typed.push(key);
        Self::type_issue(ctx, path, line, want, got);
    }

    pub(crate) fn string(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<Spanned<String>> {
        let (item, path, line) = self.item(ctx, key)?;
        match item.as_str() {
            Some(s) => Some(Spanned {
                value: s.to_string(),
                path,
                line,
            }),
            None => {
                self.wrong_type(ctx, key, &path, line, "a string", found(item));
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<Spanned<bool>> {
        let (item, path, line) = self.item(ctx, key)?;
        match item.as_bool() {
            Some(b) => Some(Spanned {
                value: b,
                path,
                line,
            }),
            None => {
                self.wrong_type(ctx, key, &path, line, "true or false", found(item));
                None
            }
        }
    }

    pub(crate) fn int(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<Spanned<i64>> {
        let (item, path, line) = self.item(ctx, key)?;
        match item.as_integer() {
            Some(i) => Some(Spanned {
                value: i,
                path,
                line,
            }),
            None => {
                self.wrong_type(ctx, key, &path, line, "an integer", found(item));
                None
            }
        }
    }

    /// An array whose elements `elem` converts; each bad element is reported on its own line.
    fn list<T>(
        &mut self,
        ctx: &mut Ctx,
        key: &'static str,
        want: &str,
        single_ok: bool,
        elem: impl Fn(&Value) -> Option<T>,
    ) -> Option<SpannedList<T>> {
        let (item, path, line) = self.item(ctx, key)?;
        if single_ok {
            if let Some(v) = item.as_value().filter(|v| !v.is_array()) {
                return match elem(v) {
                    Some(x) => Some(Spanned {
                        value: vec![Spanned {
                            value: x,
                            path: path.clone(),
                            line,
                        }],
                        path,
                        line,
                    }),
                    None => {
                        let w = format!("{want} or an array of them");
                        self.wrong_type(ctx, key, &path, line, &w, value_found(v));
                        None
                    }
                };
            }
        }
        let Some(arr) = item.as_array() else {
            Self::type_issue(
                ctx,
                &path,
                line,
                &format!("an array of {want}s"),
                found(item),
            );
            return None;
        };
        let mut out = Vec::with_capacity(arr.len());
        for (i, v) in arr.iter().enumerate() {
            let ep = format!("{path}[{i}]");
            let el = ctx.lines.line(v.span()).or(line);
            match elem(v) {
                Some(x) => out.push(Spanned {
                    value: x,
                    path: ep,
                    line: el,
                }),
                None => Self::type_issue(ctx, &ep, el, want, value_found(v)),
            }
        }
        Some(Spanned {
            value: out,
            path,
            line,
        })
    }

    /// An array of strings.
    pub(crate) fn strings(
        &mut self,
        ctx: &mut Ctx,
        key: &'static str,
    ) -> Option<SpannedList<String>> {
        self.list(ctx, key, "a string", false, |v| {
            v.as_str().map(str::to_string)
        })
    }

    /// A string or an array of strings (`rate = "60/1m"` or `rate = ["60/1m", "2000/1d"]`).
    pub(crate) fn string_or_strings(
        &mut self,
        ctx: &mut Ctx,
        key: &'static str,
    ) -> Option<SpannedList<String>> {
        self.list(ctx, key, "a string", true, |v| {
            v.as_str().map(str::to_string)
        })
    }

    /// An array of integers.
    pub(crate) fn ints(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<SpannedList<i64>> {
        self.list(ctx, key, "an integer", false, Value::as_integer)
    }

    /// A sub-table (`[a.b]`, `b = { .. }` or dotted keys).
    pub(crate) fn table(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<TableReader<'a>> {
        let (item, path, line) = self.item(ctx, key)?;
        match item.as_table_like() {
            Some(t) => {
                // A header table's span is its header line; dotted and implicit tables have
                // none, so the key's line (from `item`) stands in.
                let own = match item {
                    Item::Table(t) => ctx.lines.line(t.span()),
                    _ => None,
                };
                Some(TableReader::new(t, path, own.or(line)))
            }
            None => {
                self.wrong_type(ctx, key, &path, line, "a table", found(item));
                None
            }
        }
    }

    /// An array of tables: `[[a.b]]` sections or `b = [{ .. }, { .. }]`.
    pub(crate) fn tables(&mut self, ctx: &mut Ctx, key: &'static str) -> Vec<TableReader<'a>> {
        let Some((item, path, line)) = self.item(ctx, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match item {
            Item::ArrayOfTables(aot) => {
                for (i, t) in aot.iter().enumerate() {
                    let tl = ctx.lines.line(t.span()).or(line);
                    out.push(TableReader::new(t, format!("{path}[{i}]"), tl));
                }
            }
            Item::Value(Value::Array(arr)) => {
                for (i, v) in arr.iter().enumerate() {
                    let ep = format!("{path}[{i}]");
                    let el = ctx.lines.line(v.span()).or(line);
                    match v.as_inline_table() {
                        Some(t) => out.push(TableReader::new(t, ep, el)),
                        None => Self::type_issue(ctx, &ep, el, "a table", value_found(v)),
                    }
                }
            }
            other => {
                let want = "an array of tables ([[...]] sections)";
                self.wrong_type(ctx, key, &path, line, want, found(other));
            }
        }
        out
    }

    /// Reports every key of this table that no getter asked for.
    pub(crate) fn finish(self, ctx: &mut Ctx) {
        for (key, item) in self.table.iter() {
            if self.known.contains(&key) {
                continue;
            }
            let line = self
                .table
                .key(key)
                .and_then(|k| ctx.lines.line(k.span()))
                .or_else(|| ctx.lines.line(item.span()))
                .or(self.line);
            let hint = unknown_key_hint(key, &self.known);
            // The value is never echoed: an unknown key may well hold a secret.
            ctx.push(
                &self.child_path(key),
                line,
                format!("unknown key `{key}`"),
                Some(hint),
            );
        }
    }
}

/// "did you mean" for a near miss (edit distance ≤ 2), else the list of keys allowed here.
fn unknown_key_hint(key: &str, known: &[&'static str]) -> String {
    let best = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 2 => format!("did you mean `{k}`?"),
        _ if key.contains("secret") || key.ends_with("key") => {
            "a secret never goes in the policy file: name its source with \
             policy.identity.secret_env or secret_file"
                .to_string()
        }
        _ if known.is_empty() => "this table takes no keys".to_string(),
        _ => format!("keys allowed here: {}", known.join(", ")),
    }
}

/// Levenshtein distance (keys are short; O(n·m) is fine).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let l = Lines::new("a\nbc\n\nd");
        assert_eq!(l.line(Some(0..1)), Some(1));
        assert_eq!(l.line(Some(2..3)), Some(2));
        assert_eq!(l.line(Some(5..5)), Some(3));
        assert_eq!(l.line(Some(6..7)), Some(4));
        assert_eq!(l.line(None), None);
    }

    #[test]
    fn near_misses_get_a_suggestion() {
        assert_eq!(edit_distance("brust", "burst"), 2);
        assert_eq!(
            unknown_key_hint("brust", &["burst", "max"]),
            "did you mean `burst`?"
        );
        assert!(unknown_key_hint("zzzzzz", &["burst", "max"]).contains("burst, max"));
        assert!(unknown_key_hint("secret", &["secret_env"]).contains("never goes"));
        assert_eq!(
            unknown_key_hint("secret_evn", &["secret_env"]),
            "did you mean `secret_env`?"
        );
    }
}
