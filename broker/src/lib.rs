//! moss-broker: everything moss says to RabbitMQ (topology, confirmed publishing, consuming).
//!
//! The only crate that names lapin. It never knows what an event means.
