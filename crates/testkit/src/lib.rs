//! emqx-testkit: what the tests of the workspace share (not published).
//!
//! - [`bins`]: the workspace's binaries and the checkout, from any member;
//! - [`mqtt_client`]: a minimal blocking client asserting what it gets;
//! - [`package`]: release packages (zip, tar.gz), hostile ones included;
//! - [`clients`]: paho-mqtt in a virtual environment, Debian's mosquitto;
//! - [`browser`]: MQTT.js from npm in Debian's Chromium, headless;
//! - [`host`]: a temporary host (root, state dir, config) and its `emqx`;
//! - [`broker`]: a host running the reference broker as a non-root user,
//!   free loopback ports, an MQTT probe of the version clients see;
//! - [`refbroker`]: the reference broker as a bare process, no host;
//! - [`pki`]: a test CA and certificates, made by Debian's openssl;
//! - [`tls_client`]: a blocking MQTT client over the project's TLS engine;
//! - [`procfs`]: a process's memory, fds and CPU time from `/proc`;
//! - [`sandbox`]: a real systemd (`sandbox/systemd-sandbox`) with
//!   emqx-relup, its units and broker releases installed.

pub mod ansible;
pub mod bins;
pub mod broker;
pub mod browser;
pub mod clients;
pub mod fleet;
pub mod host;
pub mod mqtt_client;
pub mod package;
pub mod pki;
pub mod procfs;
pub mod refbroker;
pub mod sandbox;
pub mod tls_client;

pub use broker::{free_port, BrokerHost, TEST_USER};
pub use host::{parse_versions, text, Host};
pub use mqtt_client::MqttClient;
pub use package::{big_release, count_tree, entry, exe, file, release, write_tar_gz, write_zip};
pub use package::{Entry, Kind};
pub use pki::Pki;
pub use refbroker::RefBroker;
pub use sandbox::Sandbox;
