//! `check-config`'s output: the effective configuration as TOML, every section and key, each
//! value followed by a comment saying where it came from (`# default`, `# file`,
//! `# env POLLGATE_TTL`, `# flag --ttl`) and how the loader adjusted it, if it did.
//!
//! The output is itself a configuration file that loads to the same configuration: durations
//! are written humantime-style, an unset optional key and a secret are written as comments
//! (a secret's value never appears).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, Uri};

use super::origin::Provenance;
use super::rules::zero_means;
use super::LogFormat;

/// A value as a TOML literal.
pub(super) trait Print {
    fn toml(&self) -> String;
}

fn string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

impl Print for Duration {
    fn toml(&self) -> String {
        string(&humantime::format_duration(*self).to_string())
    }
}

impl Print for usize {
    fn toml(&self) -> String {
        self.to_string()
    }
}

impl Print for u64 {
    fn toml(&self) -> String {
        self.to_string()
    }
}

impl Print for bool {
    fn toml(&self) -> String {
        self.to_string()
    }
}

/// Whole numbers print as integers (`0`, `5`), as people write them; both load as floats.
impl Print for f64 {
    fn toml(&self) -> String {
        const EXACT: f64 = (1u64 << 53) as f64;
        if self.fract() == 0.0 && self.abs() < EXACT {
            format!("{}", *self as i64)
        } else {
            toml::Value::Float(*self).to_string()
        }
    }
}

impl Print for SocketAddr {
    fn toml(&self) -> String {
        string(&self.to_string())
    }
}

impl Print for Uri {
    fn toml(&self) -> String {
        string(&self.to_string())
    }
}

impl Print for LogFormat {
    fn toml(&self) -> String {
        string(self.as_str())
    }
}

impl Print for String {
    fn toml(&self) -> String {
        string(self)
    }
}

impl Print for [HeaderName] {
    fn toml(&self) -> String {
        let names: Vec<String> = self.iter().map(|n| string(n.as_str())).collect();
        format!("[{}]", names.join(", "))
    }
}

impl<T: Print + ?Sized> Print for &T {
    fn toml(&self) -> String {
        (**self).toml()
    }
}

/// Comments start in one column per section, up to this width of `key = value`.
const ALIGN_MAX: usize = 40;

/// Writes the TOML text section by section.
pub(super) struct Renderer<'p> {
    provenance: &'p Provenance,
    out: String,
    section: &'static str,
    /// The current section's lines: `key = value` (or a commented-out key) and its comment.
    rows: Vec<(String, String)>,
}

impl<'p> Renderer<'p> {
    /// Start with `header`, one comment line per element.
    pub(super) fn new(header: &[String], provenance: &'p Provenance) -> Self {
        let mut out = String::new();
        for line in header {
            let _ = writeln!(out, "# {line}");
        }
        Renderer {
            provenance,
            out,
            section: "",
            rows: Vec::new(),
        }
    }

    /// Start `[name]` (dotted for a nested section: `server.tls`).
    pub(super) fn section(&mut self, name: &'static str) {
        self.flush();
        let _ = write!(self.out, "\n[{name}]\n");
        self.section = name;
    }

    pub(super) fn key(&mut self, name: &'static str, value: impl Print) {
        let literal = value.toml();
        let key = self.full_key(name);
        let mut comment = self.comment(&key);
        if literal == "0" {
            if let Some(meaning) = zero_means(&key) {
                let _ = write!(comment, ", 0 = {meaning}");
            }
        }
        self.rows.push((format!("{name} = {literal}"), comment));
    }

    /// A key that may be unset; unset is written as a comment, which loads as unset.
    pub(super) fn optional(&mut self, name: &'static str, value: Option<impl Print>) {
        match value {
            Some(v) => self.key(name, v),
            None => {
                let comment = self.comment(&self.full_key(name));
                self.rows.push((format!("# {name} = <not set>"), comment));
            }
        }
    }

    /// A secret: only whether it is set, and where from.
    pub(super) fn secret(&mut self, name: &'static str, set: bool) {
        let comment = self.comment(&self.full_key(name));
        let shown = if set { "<redacted>" } else { "<not set>" };
        self.rows.push((format!("# {name} = {shown}"), comment));
    }

    pub(super) fn finish(mut self) -> String {
        self.flush();
        self.out
    }

    fn full_key(&self, name: &str) -> String {
        format!("{}.{name}", self.section)
    }

    fn comment(&self, key: &str) -> String {
        let mut comment = self.provenance.origin(key).to_string();
        if let Some(note) = self.provenance.note(key) {
            let _ = write!(comment, ", {note}");
        }
        comment
    }

    fn flush(&mut self) {
        let width = self
            .rows
            .iter()
            .map(|(text, _)| text.chars().count())
            .filter(|w| *w <= ALIGN_MAX)
            .max()
            .unwrap_or(0);
        for (text, comment) in self.rows.drain(..) {
            let _ = writeln!(self.out, "{text:<width$}  # {comment}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::origin::Origin;
    use super::*;

    #[test]
    fn literals_are_toml() {
        assert_eq!(Duration::from_millis(750).toml(), "\"750ms\"");
        assert_eq!(Duration::from_secs(5400).toml(), "\"1h 30m\"");
        assert_eq!(Duration::ZERO.toml(), "\"0s\"");
        assert_eq!(0.0f64.toml(), "0");
        assert_eq!(2.5f64.toml(), "2.5");
        for v in [1e300, 0.1, 2.0f64.powi(53)] {
            let text = format!("v = {}", v.toml());
            let back: toml::Table = toml::from_str(&text).expect("valid TOML");
            assert_eq!(
                back["v"]
                    .as_float()
                    .or(back["v"].as_integer().map(|i| i as f64)),
                Some(v)
            );
        }
        assert_eq!(string("a\"b\\c"), "'a\"b\\c'");
        assert_eq!(
            [HeaderName::from_static("a"), HeaderName::from_static("b-c")][..].toml(),
            "[\"a\", \"b-c\"]"
        );
        assert_eq!(Vec::<HeaderName>::new()[..].toml(), "[]");
    }

    #[test]
    fn every_line_says_where_its_value_came_from() {
        let mut p = Provenance::default();
        p.record("cache.ttl", Origin::Env("POLLGATE_TTL"));
        p.annotate("cache.terminal_ttl", "raised to cache.ttl");
        p.record("upstream.max_requests_per_second", Origin::File);
        let mut r = Renderer::new(&["head".into()], &p);
        r.section("cache");
        r.key("ttl", Duration::from_secs(600));
        r.key("terminal_ttl", Duration::from_secs(600));
        r.optional("nothing", None::<Duration>);
        r.section("upstream");
        r.key("max_requests_per_second", 0.0);
        r.secret("token", true);
        r.secret("other", false);
        let text = r.finish();
        assert_eq!(
            text,
            "# head\n\
             \n[cache]\n\
             ttl = \"10m\"            # env POLLGATE_TTL\n\
             terminal_ttl = \"10m\"   # default, raised to cache.ttl\n\
             # nothing = <not set>  # default\n\
             \n[upstream]\n\
             max_requests_per_second = 0  # file, 0 = no per-credential budget\n\
             # token = <redacted>         # default\n\
             # other = <not set>          # default\n"
        );
    }
}
