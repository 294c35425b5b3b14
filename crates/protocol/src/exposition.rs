//! The Prometheus text exposition format, read: the one parser the load tester's
//! `--scrape-metrics`, the server's tests and its benchmark use on a `/metrics` body.
//!
//! Comments and blank lines are skipped; label values are unescaped (`\\`, `\"`, `\n`); an
//! optional timestamp after the value is ignored; a line that does not parse is skipped rather
//! than failing the whole scrape (a scrape is an observation, not a contract).

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every `(key, value)` of `want` is among the sample's labels.
    pub fn has(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// Every sample of a `/metrics` body, in order.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(parse_line)
}

/// The sum of the samples of `name` whose labels include all of `want` (e.g. every version of a
/// model); `None` when there is none.
pub fn sum(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .filter(|s| s.name == name && s.has(want))
        .map(|s| s.value)
        .reduce(|a, b| a + b)
}

/// The value of the one series of `name` with exactly the labels `want`.
pub fn exact(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .find(|s| s.name == name && s.labels.len() == want.len() && s.has(want))
        .map(|s| s.value)
}

fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => labels(after)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `k="v",...}` -> the pairs and what follows the `}`.
fn labels(mut s: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((out, rest));
        }
        let (key, after) = s.split_once('=')?;
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim(), value));
        s = &after[1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP torchship_pending_requests Requests queued.\n\
        # TYPE torchship_pending_requests gauge\n\
        torchship_pending_requests{model=\"mlp\",version=\"1\"} 3\n\
        torchship_pending_requests{model=\"mlp\",version=\"2\"} 2\n\
        torchship_pending_requests{model=\"digits\",version=\"1\"} 7\n\
        torchship_batch_size_bucket{model=\"mlp\",version=\"1\",le=\"+Inf\"} 4\n\
        torchship_http_requests_total{route=\"/v2/models/{model}/infer\",method=\"POST\",status=\"200\"} 12 1700000000\n\
        odd{msg=\"a \\\"quoted\\\", comma\\\\ and\\nline\"} 1\n\
        process_open_fds 9\n\
        garbage line\n";

    #[test]
    fn sums_add_up_across_the_other_labels() {
        assert_eq!(
            sum(TEXT, "torchship_pending_requests", &[("model", "mlp")]),
            Some(5.0)
        );
        assert_eq!(sum(TEXT, "torchship_pending_requests", &[]), Some(12.0));
        assert_eq!(
            sum(TEXT, "torchship_pending_requests", &[("model", "m")]),
            None
        );
        assert_eq!(sum(TEXT, "torchship_pending", &[]), None);
    }

    #[test]
    fn exact_needs_every_label() {
        let labels = [("model", "mlp"), ("version", "2")];
        assert_eq!(
            exact(TEXT, "torchship_pending_requests", &labels),
            Some(2.0)
        );
        assert_eq!(
            exact(TEXT, "torchship_pending_requests", &[("model", "mlp")]),
            None
        );
        assert_eq!(exact(TEXT, "process_open_fds", &[]), Some(9.0));
        let route = [
            ("route", "/v2/models/{model}/infer"),
            ("method", "POST"),
            ("status", "200"),
        ];
        assert_eq!(
            exact(TEXT, "torchship_http_requests_total", &route),
            Some(12.0)
        );
    }

    #[test]
    fn label_values_are_unescaped_and_infinities_read() {
        let odd = samples(TEXT).find(|s| s.name == "odd").unwrap();
        assert_eq!(odd.label("msg"), Some("a \"quoted\", comma\\ and\nline"));
        let inf = samples(TEXT)
            .find(|s| s.label("le") == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.value, 4.0);
        assert_eq!(samples(TEXT).count(), 7, "the garbage line is skipped");
    }
}
