//! moss-online: the client for Microsoft Graph v1.0 and the Exchange Online admin API.
//!
//! The only crate that speaks to Microsoft. It never knows RabbitMQ or sled.
