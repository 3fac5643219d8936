use std::fmt;

use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::error::BrokerError;

/// The most partitions a topology may have (each is a quorum queue: a Raft group on every node).
pub const MAX_PARTITIONS: u16 = 1024;

/// The default `x-delivery-limit` of partition queues: a message returned this many times goes
/// to the dead queue instead of looping, so a message that crashes every worker that takes it
/// cannot hold its partition for ever.
///
/// RabbitMQ 3.10 counts *every* return, and a worker's SIGKILL, a RabbitMQ restart or a closed
/// channel returns everything in that worker's prefetch window (64 per partition by default),
/// including events that were only waiting their turn. With 10, a healthy event that waited
/// through ten such restarts was dead-lettered by the broker behind moss's back (the chaos run
/// saw it after about 10 restarts in 4 minutes), and its subject's later events then applied
/// without it. 100 is far beyond the restarts an event sees while it waits (about a minute at
/// the tenant's write budget), and a real crash loop is still ended after 100 crashes.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 100;

/// The default `x-max-length` of each partition queue.
///
/// Why a limit at all: at-least-once dead lettering needs `x-overflow=reject-publish`, and with
/// it a full queue answers publishes with a nack instead of dropping anything. The producer's
/// outbox keeps nacked events and resends them, so during a long tenant outage the backlog
/// waits on the producer's disk rather than in RabbitMQ 3.10, where long quorum queues are slow.
/// 100 000 messages of a few KiB is well within one node's disk and memory.
pub const DEFAULT_PARTITION_MAX_LENGTH: u32 = 100_000;

/// The prefix of every exchange and queue name (`MOSS_TOPOLOGY_PREFIX`, default `moss`).
///
/// 1 to 200 characters of `A-Z a-z 0-9 . _ -`, so that every derived name stays within AMQP's
/// 255-byte limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopologyPrefix(String);

impl TopologyPrefix {
    /// Checks and wraps a prefix.
    pub fn parse(prefix: &str) -> Result<TopologyPrefix, BrokerError> {
        let invalid = |reason: String| BrokerError::InvalidArgument {
            field: "topology prefix",
            reason,
        };
        if prefix.is_empty() {
            return Err(invalid("it is empty".to_owned()));
        }
        if prefix.len() > 200 {
            return Err(invalid(format!(
                "it is {} characters long; at most 200 are allowed",
                prefix.len()
            )));
        }
        if let Some(bad) = prefix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(invalid(format!(
                "{prefix:?} contains {bad:?}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed"
            )));
        }
        Ok(TopologyPrefix(prefix.to_owned()))
    }

    /// The prefix as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TopologyPrefix {
    fn default() -> TopologyPrefix {
        TopologyPrefix("moss".to_owned())
    }
}

impl fmt::Display for TopologyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The exchanges and queues of one installation (INTERFACES.md, "RabbitMQ names").
///
/// | name | what |
/// |---|---|
/// | `{prefix}.events` | direct exchange; routing key `p{n}` → partition queue n |
/// | `{prefix}.events.p{n}` | quorum queue, single active consumer, at-least-once dead lettering to `{prefix}.dead`, delivery limit, max length with reject-publish |
/// | `{prefix}.dead` | fanout exchange (dead letters keep their `p{n}` routing key, so it must not filter) and quorum queue bound to it |
/// | `{prefix}.outcomes` | fanout exchange for outcome events; moss binds no queue (audit and dashboards bind their own) |
///
/// Changing any queue setting after the queues exist makes [`crate::Broker::declare`] fail with
/// [`BrokerError::TopologyMismatch`]: RabbitMQ never changes a queue's arguments in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: TopologyPrefix,
    partitions: u16,
    delivery_limit: u32,
    partition_max_length: Option<u32>,
}

impl Topology {
    /// A topology of `partitions` (1 to 1024) partition queues under `prefix`, with the default
    /// delivery limit and max length.
    pub fn new(prefix: TopologyPrefix, partitions: u16) -> Result<Topology, BrokerError> {
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(BrokerError::InvalidArgument {
                field: "partitions",
                reason: format!("{partitions} is outside 1..={MAX_PARTITIONS}"),
            });
        }
        Ok(Topology {
            prefix,
            partitions,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            partition_max_length: Some(DEFAULT_PARTITION_MAX_LENGTH),
        })
    }

    /// The same topology with another `x-delivery-limit` (at least 1).
    pub fn with_delivery_limit(mut self, limit: u32) -> Result<Topology, BrokerError> {
        if limit == 0 || limit > i32::MAX as u32 {
            return Err(BrokerError::InvalidArgument {
                field: "delivery limit",
                reason: format!("{limit} is outside 1..={}", i32::MAX),
            });
        }
        self.delivery_limit = limit;
        Ok(self)
    }

    /// The same topology with another `x-max-length` per partition queue (`None`: unbounded).
    pub fn with_partition_max_length(
        mut self,
        max_length: Option<u32>,
    ) -> Result<Topology, BrokerError> {
        if let Some(length) = max_length
            && (length == 0 || length > i32::MAX as u32)
        {
            return Err(BrokerError::InvalidArgument {
                field: "partition max length",
                reason: format!("{length} is outside 1..={}", i32::MAX),
            });
        }
        self.partition_max_length = max_length;
        Ok(self)
    }

    /// The prefix of every name.
    #[must_use]
    pub fn prefix(&self) -> &TopologyPrefix {
        &self.prefix
    }

    /// The number of partition queues.
    #[must_use]
    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// The `x-delivery-limit` of the partition queues.
    #[must_use]
    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    /// The `x-max-length` of each partition queue, if bounded.
    #[must_use]
    pub fn partition_max_length(&self) -> Option<u32> {
        self.partition_max_length
    }

    /// `{prefix}.events`, the direct exchange producers publish to.
    #[must_use]
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// `{prefix}.events.p{partition}`.
    #[must_use]
    pub fn partition_queue(&self, partition: u16) -> String {
        format!("{}.events.p{partition}", self.prefix)
    }

    /// `p{partition}`, the routing key that reaches partition queue `partition`.
    #[must_use]
    pub fn partition_routing_key(&self, partition: u16) -> String {
        format!("p{partition}")
    }

    /// Every partition queue name, in partition order.
    #[must_use]
    pub fn partition_queues(&self) -> Vec<String> {
        (0..self.partitions)
            .map(|n| self.partition_queue(n))
            .collect()
    }

    /// `{prefix}.dead`, the fanout exchange dead letters go to.
    #[must_use]
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// `{prefix}.dead`, the quorum queue that keeps the dead letters.
    #[must_use]
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// `{prefix}.outcomes`, the fanout exchange for outcome events.
    #[must_use]
    pub fn outcomes_exchange(&self) -> String {
        format!("{}.outcomes", self.prefix)
    }

    /// The arguments of every partition queue.
    pub(crate) fn partition_queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), long_string("quorum"));
        arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        arguments.insert(
            "x-dead-letter-exchange".into(),
            long_string(&self.dead_exchange()),
        );
        arguments.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        // Without reject-publish RabbitMQ silently falls back to at-most-once dead lettering.
        arguments.insert("x-overflow".into(), long_string("reject-publish"));
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(to_i32(self.delivery_limit)),
        );
        if let Some(length) = self.partition_max_length {
            arguments.insert("x-max-length".into(), AMQPValue::LongInt(to_i32(length)));
        }
        arguments
    }

    /// The arguments of the dead queue: quorum, and nothing that could drop or expire a letter.
    pub(crate) fn dead_queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), long_string("quorum"));
        arguments
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// Values were range-checked to fit when the topology was built.
fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// A name for the wire; every name of a valid topology fits in a short string.
pub(crate) fn short(name: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(name).map_err(|_| BrokerError::InvalidArgument {
        field: "name",
        reason: format!("{name:?} is longer than 255 bytes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology::new(TopologyPrefix::parse("moss").expect("prefix"), 8).expect("topology")
    }

    #[test]
    fn names_follow_the_interfaces_document() {
        let topology = topology();
        assert_eq!(topology.events_exchange(), "moss.events");
        assert_eq!(topology.partition_queue(3), "moss.events.p3");
        assert_eq!(topology.partition_routing_key(3), "p3");
        assert_eq!(topology.dead_exchange(), "moss.dead");
        assert_eq!(topology.dead_queue(), "moss.dead");
        assert_eq!(topology.outcomes_exchange(), "moss.outcomes");
        assert_eq!(topology.partition_queues().len(), 8);
        assert_eq!(topology.partition_queues()[7], "moss.events.p7");
    }

    #[test]
    fn a_bad_prefix_is_refused_naming_the_field() {
        for bad in ["", "has space", "slash/", "ümlaut", &"x".repeat(201)] {
            let error = TopologyPrefix::parse(bad).expect_err("bad prefix");
            assert!(
                error.to_string().starts_with("invalid topology prefix"),
                "{error}"
            );
        }
        TopologyPrefix::parse("moss-test_1.a").expect("good prefix");
    }

    #[test]
    fn partitions_must_be_between_1_and_1024() {
        let prefix = TopologyPrefix::default();
        assert!(Topology::new(prefix.clone(), 0).is_err());
        assert!(Topology::new(prefix.clone(), 1025).is_err());
        assert!(Topology::new(prefix.clone(), 1).is_ok());
        assert!(Topology::new(prefix, 1024).is_ok());
    }

    #[test]
    fn partition_queues_dead_letter_at_least_once() {
        let arguments = topology().partition_queue_arguments();
        let get = |key: &str| arguments.inner().get(key).cloned();
        assert_eq!(get("x-queue-type"), Some(long_string("quorum")));
        assert_eq!(
            get("x-single-active-consumer"),
            Some(AMQPValue::Boolean(true))
        );
        assert_eq!(
            get("x-dead-letter-exchange"),
            Some(long_string("moss.dead"))
        );
        assert_eq!(
            get("x-dead-letter-strategy"),
            Some(long_string("at-least-once"))
        );
        assert_eq!(get("x-overflow"), Some(long_string("reject-publish")));
        assert_eq!(get("x-delivery-limit"), Some(AMQPValue::LongInt(100)));
        assert_eq!(get("x-max-length"), Some(AMQPValue::LongInt(100_000)));
    }

    #[test]
    fn an_unbounded_partition_queue_has_no_max_length() {
        let topology = topology()
            .with_partition_max_length(None)
            .expect("unbounded");
        assert!(
            !topology
                .partition_queue_arguments()
                .contains_key("x-max-length")
        );
        assert!(topology.clone().with_delivery_limit(0).is_err());
    }
}
