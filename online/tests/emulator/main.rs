//! moss-online against the emulator: real HTTP, real token endpoint, scripted faults.
//!
//! Each test starts its own emulator on port 0, so tests run in parallel without sharing state.

mod tenant;

mod batch;
mod errors;
mod exchange;
mod throttling;
mod users;
