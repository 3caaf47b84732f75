//! The side-by-side harness of `tests/mqtt5.rs`: a broker under test
//! (Debian's mosquitto or the reference broker) with the quirks the tests
//! allow it, the scenarios of `tests/mqtt5.py` run against it, and what
//! their clients observed. `wire.rs` holds the checks of the scenarios
//! about reason codes, the CONNACK and malformed input.

pub mod wire;

use std::net::SocketAddr;
use std::process::Command;

use emqx_testkit::clients::{paho_python, Mosquitto};
use emqx_testkit::RefBroker;
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mqtt5.py");

/// Where a broker departs from the issue in a way the tests allow (the
/// header lists each); all false / 1 s for the reference broker.
pub struct Quirks {
    /// Queued messages may go past the client's receive maximum once the
    /// first PUBACK is in.
    pub refills_past_receive_maximum: bool,
    /// The connection taken over may be closed without DISCONNECT 0x8E.
    pub takeover_closes_silently: bool,
    /// A keep-alive timeout may close without DISCONNECT 0x8D.
    pub keepalive_closes_silently: bool,
    /// How late after 1.5 x the keep-alive the close may come, seconds.
    pub keepalive_check_secs: f64,
    /// An invalid filter may get DISCONNECT 0x81 instead of a SUBACK.
    pub invalid_filter_disconnects: bool,
}

enum Broker {
    Mosquitto(Mosquitto),
    Ref(RefBroker),
}

/// A running broker under test.
pub struct Target {
    broker: Broker,
    pub quirks: Quirks,
}

impl Target {
    pub fn mosquitto() -> Target {
        Target {
            broker: Broker::Mosquitto(Mosquitto::start()),
            quirks: Quirks {
                refills_past_receive_maximum: true,
                takeover_closes_silently: true,
                keepalive_closes_silently: true,
                keepalive_check_secs: 7.0,
                invalid_filter_disconnects: true,
            },
        }
    }

    pub fn refbroker() -> Target {
        Target {
            broker: Broker::Ref(RefBroker::start()),
            quirks: Quirks {
                refills_past_receive_maximum: false,
                takeover_closes_silently: false,
                keepalive_closes_silently: false,
                keepalive_check_secs: 1.0,
                invalid_filter_disconnects: false,
            },
        }
    }

    fn addr(&self) -> SocketAddr {
        match &self.broker {
            Broker::Mosquitto(m) => m.addr,
            Broker::Ref(r) => r.mqtt(),
        }
    }

    fn log(&self) -> String {
        match &self.broker {
            Broker::Mosquitto(_) => String::new(),
            Broker::Ref(r) => format!("\nreference broker's log:\n{}", r.log()),
        }
    }

    /// What the clients of `scenario` observed; panics when it could not
    /// run (the broker refused the connection, sent no CONNACK...).
    pub fn observe(&self, scenario: &str) -> Observed {
        let addr = self.addr();
        let out = Command::new(paho_python())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(SCRIPT)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(scenario)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let value: Option<Value> = serde_json::from_str(stdout.trim()).ok();
        match value {
            Some(v) if out.status.success() => {
                eprintln!("{scenario}: {v}");
                Observed(v, self.log())
            }
            _ => panic!(
                "{scenario} could not run ({}): {stdout}{stderr}{}",
                out.status,
                self.log()
            ),
        }
    }
}

/// A scenario's observations, and the broker's log for failure messages.
pub struct Observed(Value, String);

impl Observed {
    pub fn get(&self, key: &str) -> &Value {
        &self.0[key]
    }

    /// `cond`, or a panic showing everything observed.
    pub fn expect(&self, cond: bool, what: &str) {
        assert!(cond, "{what}\nobserved: {}{}", self.0, self.1);
    }

    pub fn eq(&self, key: &str, want: Value, what: &str) {
        let got = self.get(key);
        self.expect(*got == want, &format!("{what}: {key} = {got}, want {want}"));
    }

    pub fn session_present(&self, key: &str) -> bool {
        self.expect(self.get(key)["rc"] == 0, &format!("{key}: CONNACK not 0"));
        self.get(key)["session_present"].as_bool().unwrap()
    }
}

pub fn payloads(messages: &Value) -> Vec<String> {
    list(messages)
        .iter()
        .map(|m| m["payload"].as_str().unwrap_or_default().to_string())
        .collect()
}

pub fn list(v: &Value) -> &Vec<Value> {
    static EMPTY: Vec<Value> = Vec::new();
    v.as_array().unwrap_or(&EMPTY)
}

pub fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

pub fn numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Sorted subscription identifiers of each delivery of one message.
pub fn id_sets(v: &Value) -> Vec<Vec<u64>> {
    let mut sets: Vec<Vec<u64>> = list(v)
        .iter()
        .map(|ids| {
            let mut ids: Vec<u64> = list(ids).iter().filter_map(Value::as_u64).collect();
            ids.sort();
            ids
        })
        .collect();
    sets.sort();
    sets
}

/// A message matching two subscriptions with identifiers `a` < `b`: one
/// copy carrying both, or one copy per subscription each with its own
/// (MQTT-3.3.4-3, -4, -5).
pub fn both_ids(o: &Observed, key: &str, a: u64, b: u64) {
    let sets = id_sets(o.get(key));
    o.expect(
        sets == vec![vec![a, b]] || sets == vec![vec![a], vec![b]],
        &format!("{key}: subscription identifiers {sets:?}, want [[{a}, {b}]] or [[{a}], [{b}]]"),
    );
}

/// One test per broker for each scenario, both calling the same check.
#[macro_export]
macro_rules! side_by_side {
    ($($check:ident: $mosquitto:ident, $refbroker:ident;)*) => {$(
        #[test]
        fn $mosquitto() {
            $check(&$crate::mqtt5_spec::Target::mosquitto());
        }

        #[test]
        fn $refbroker() {
            $check(&$crate::mqtt5_spec::Target::refbroker());
        }
    )*};
}
