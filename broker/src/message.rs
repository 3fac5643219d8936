use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// A header value moss sends or reads. Other AMQP types (arrays, tables such as `x-death`)
/// are not carried: moss counts retries and replays in its own headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Text (sent as an AMQP long string).
    Text(String),
    /// A signed integer (sent as a 64-bit AMQP integer; any integer type is read back as this).
    Int(i64),
    /// A flag.
    Bool(bool),
}

/// Message headers, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(BTreeMap<String, HeaderValue>);

impl Headers {
    /// No headers.
    #[must_use]
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Sets a header, replacing a previous value of the same name.
    pub fn insert(&mut self, name: impl Into<String>, value: HeaderValue) -> &mut Headers {
        self.0.insert(name.into(), value);
        self
    }

    /// The same headers plus a text header (builder style).
    #[must_use]
    pub fn with_text(mut self, name: impl Into<String>, value: impl Into<String>) -> Headers {
        self.0.insert(name.into(), HeaderValue::Text(value.into()));
        self
    }

    /// The same headers plus an integer header (builder style).
    #[must_use]
    pub fn with_int(mut self, name: impl Into<String>, value: i64) -> Headers {
        self.0.insert(name.into(), HeaderValue::Int(value));
        self
    }

    /// A header's value.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.0.get(name)
    }

    /// A text header's value (`None` when absent or not text).
    #[must_use]
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(HeaderValue::Text(text)) => Some(text),
            _ => None,
        }
    }

    /// An integer header's value (`None` when absent or not an integer).
    #[must_use]
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        match self.0.get(name) {
            Some(HeaderValue::Int(value)) => Some(*value),
            _ => None,
        }
    }

    /// A flag header's value (`None` when absent or not a flag).
    #[must_use]
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        match self.0.get(name) {
            Some(HeaderValue::Bool(value)) => Some(*value),
            _ => None,
        }
    }

    /// Every header, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HeaderValue)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    /// The number of headers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads headers from the wire form of an AMQP field table (a delivery's `headers`
    /// property as the peer sent it), parsed by lapin and read as the consumer reads every
    /// delivery; `None` when the bytes are not a field table. For the fuzz targets and their
    /// corpus tests: deliveries arrive already parsed.
    #[doc(hidden)]
    #[must_use]
    pub fn from_wire_table(bytes: &[u8]) -> Option<Headers> {
        let (_rest, table) = lapin::types::parsing::parse_field_table(bytes).ok()?;
        Some(Headers::from_field_table(Some(&table)))
    }

    /// The wire form of these headers as [`crate::Publisher`] sends them (a dead letter
    /// republishes the headers it got); fails when a name is longer than 255 bytes. For the
    /// fuzz targets and their corpus tests.
    #[doc(hidden)]
    pub fn to_wire_table(&self) -> Result<Vec<u8>, String> {
        let table = self.to_field_table()?;
        cookie_factory::gen_simple(
            lapin::types::generation::gen_field_table(&table),
            Vec::new(),
        )
        .map_err(|error| format!("the headers cannot be written: {error}"))
    }

    pub(crate) fn to_field_table(&self) -> Result<FieldTable, String> {
        let mut table = FieldTable::default();
        for (name, value) in &self.0 {
            let key = ShortString::try_new(name.as_str())
                .map_err(|_| format!("header name {name:?} is longer than 255 bytes"))?;
            let value = match value {
                HeaderValue::Text(text) => AMQPValue::LongString(LongString::from(text.as_str())),
                HeaderValue::Int(value) => AMQPValue::LongLongInt(*value),
                HeaderValue::Bool(value) => AMQPValue::Boolean(*value),
            };
            table.insert(key, value);
        }
        Ok(table)
    }

    pub(crate) fn from_field_table(table: Option<&FieldTable>) -> Headers {
        let mut headers = Headers::default();
        let Some(table) = table else {
            return headers;
        };
        for (name, value) in table {
            let value = match value {
                AMQPValue::LongString(text) => match std::str::from_utf8(text.as_bytes()) {
                    Ok(text) => HeaderValue::Text(text.to_owned()),
                    Err(_) => continue,
                },
                AMQPValue::ShortString(text) => HeaderValue::Text(text.to_string()),
                AMQPValue::Boolean(value) => HeaderValue::Bool(*value),
                AMQPValue::ShortShortInt(value) => HeaderValue::Int(i64::from(*value)),
                AMQPValue::ShortShortUInt(value) => HeaderValue::Int(i64::from(*value)),
                AMQPValue::ShortInt(value) => HeaderValue::Int(i64::from(*value)),
                AMQPValue::ShortUInt(value) => HeaderValue::Int(i64::from(*value)),
                AMQPValue::LongInt(value) => HeaderValue::Int(i64::from(*value)),
                AMQPValue::LongUInt(value) => HeaderValue::Int(i64::from(*value)),
                AMQPValue::LongLongInt(value) => HeaderValue::Int(*value),
                _ => continue,
            };
            headers.0.insert(name.to_string(), value);
        }
        headers
    }
}

/// Whether RabbitMQ writes a message to disk. Quorum queues always do; the flag still matters
/// for any classic queue someone binds to the outcomes exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// Delivery mode 2: survives a broker restart.
    #[default]
    Persistent,
    /// Delivery mode 1.
    Transient,
}

/// A message to publish with [`crate::Publisher::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The exchange (e.g. [`crate::Topology::events_exchange`]).
    pub exchange: String,
    /// The routing key (e.g. [`crate::Topology::partition_routing_key`]).
    pub routing_key: String,
    /// The AMQP `message-id`; moss uses the event id, so consumers can deduplicate.
    pub message_id: String,
    /// The bytes.
    pub body: Vec<u8>,
    /// The AMQP `content-type`, e.g. `application/cloudevents+json`.
    pub content_type: String,
    /// Application headers (e.g. `moss-attempt`).
    pub headers: Headers,
    /// Delivery mode.
    pub persistence: Persistence,
}
