//! moss-emulator: a faithful local stand-in for Microsoft Entra ID (Graph v1.0), the identity
//! platform token endpoint and the Exchange Online admin API.
//!
//! Shares no code with moss-online by design: two independent readings of the wire format.
