//! Reading a service's `/metrics` (Prometheus text format) for the figures only the service
//! knows: the producer's outbox backlog, the worker's applied count, circuit and free seats.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The producer's gauge of events stored but not yet confirmed by RabbitMQ.
pub(crate) const PRODUCER_OUTBOX_BACKLOG: &str = "moss_producer_outbox_backlog";
/// The worker's counter of events applied to the tenant.
pub(crate) const WORKER_APPLIED: &str = "moss_worker_events_applied_total";
/// The worker's circuit: 1 on the series whose `state` label (`closed`, `open`, `probing`) is
/// the current one, with the failure class that opened it in `cause`.
pub(crate) const WORKER_CIRCUIT: &str = "moss_worker_circuit_state";
/// Users whose online account waits for a free licence seat (gauge).
pub(crate) const WORKER_AWAITING_LICENCE: &str = "moss_worker_awaiting_licence";
/// Free licence seats per SKU, as the worker last read them from the tenant (`sku` label).
pub(crate) const WORKER_FREE_SEATS: &str = "moss_worker_free_seats";

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// Fetches `http://{addr}/metrics`.
    pub(crate) async fn fetch(client: &reqwest::Client, addr: &str) -> Result<Scrape> {
        let url = format!("http://{addr}/metrics");
        let response = client
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .with_context(|| format!("nothing answers at {url}"))?;
        if !response.status().is_success() {
            bail!("{url} answered {}", response.status());
        }
        let text = response
            .text()
            .await
            .with_context(|| format!("could not read {url}"))?;
        Ok(Scrape::parse(&text))
    }

    /// Parses the text format; lines it does not understand are skipped.
    pub(crate) fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Scrape { samples }
    }

    /// The value of an unlabelled metric (or the sum over its labels).
    pub(crate) fn value(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for sample in self.samples.iter().filter(|sample| sample.name == name) {
            *found.get_or_insert(0.0) += sample.value;
        }
        found
    }

    /// Every sample of a metric.
    pub(crate) fn series(&self, name: &str) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |sample| sample.name == name)
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name_and_labels, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..=close], line[close + 1..].trim())
        }
        None => {
            let space = line.find(' ')?;
            (&line[..space], line[space..].trim())
        }
    };
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    let (name, labels) = match name_and_labels.find('{') {
        Some(open) => (
            &name_and_labels[..open],
            parse_labels(&name_and_labels[open + 1..name_and_labels.len() - 1]),
        ),
        None => (name_and_labels, BTreeMap::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some(equals) = rest.find('=') {
        let name = rest[..equals]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_owned();
        let after = &rest[equals + 1..];
        let Some(after_quote) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = after_quote.char_indices();
        let mut end = after_quote.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = index + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(name, value);
        rest = &after_quote[end..];
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_reads_with_and_without_labels() {
        let scrape = Scrape::parse(
            "# HELP moss_producer_outbox_backlog Events stored\n\
             # TYPE moss_producer_outbox_backlog gauge\n\
             moss_producer_outbox_backlog 7\n\
             moss_worker_free_seats{sku=\"ENTERPRISEPACK\"} 3\n\
             moss_worker_free_seats{sku=\"E5 \\\"x\\\"\",tenant=\"t\"} 1\n\
             moss_worker_circuit_state{state=\"open\",cause=\"transient\"} 1\n\
             moss_worker_events_applied_total 12 1700000000000\n\
             # EOF\n",
        );
        assert_eq!(scrape.value(PRODUCER_OUTBOX_BACKLOG), Some(7.0));
        assert_eq!(scrape.value(WORKER_APPLIED), Some(12.0));
        assert_eq!(scrape.value(WORKER_FREE_SEATS), Some(4.0));
        let seats: Vec<&Sample> = scrape.series(WORKER_FREE_SEATS).collect();
        assert_eq!(seats[1].labels["sku"], "E5 \"x\"");
        assert_eq!(seats[1].labels["tenant"], "t");
        let circuit: Vec<&Sample> = scrape.series(WORKER_CIRCUIT).collect();
        assert_eq!(circuit[0].labels["cause"], "transient");
        assert_eq!(scrape.value("missing"), None);
    }
}
