//! moss-tests: end-to-end scenarios over a real RabbitMQ and the in-process emulator.
