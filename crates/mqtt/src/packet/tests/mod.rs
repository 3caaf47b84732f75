//! Tests of the codec: 3.1.1 as it always was, MQTT 5 packets and their
//! malformed cases, properties, and round trips at every level.

mod v311;
