//! A minimal blocking MQTT client on the workspace's codec, for tests that
//! need to send exactly one packet or check exactly what comes back.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use emqx_mqtt::{read_packet, Packet, PacketError, ReasonCode};

/// How long a read waits.
const WAIT: Duration = Duration::from_secs(5);

/// A blocking client that asserts what it receives.
pub struct MqttClient {
    /// The connection (tests write raw bytes on it too).
    pub stream: TcpStream,
    next_id: u16,
}

impl MqttClient {
    /// Connected, nothing sent.
    pub fn raw(addr: SocketAddr) -> MqttClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        MqttClient { stream, next_id: 0 }
    }

    /// Connects with a clean session; asserts CONNACK 0.
    pub fn connect(addr: SocketAddr, id: &str, keep_alive: u16) -> MqttClient {
        let mut c = MqttClient::raw(addr);
        c.send(&Packet::connect(id, true, keep_alive));
        assert_eq!(c.recv(), Packet::connack(false, ReasonCode::SUCCESS));
        c
    }

    /// Connects at 3.1.1 with a clean session as `user` with `password`;
    /// the client and its CONNACK return code (0: let in).
    pub fn login(addr: SocketAddr, id: &str, user: &str, password: &str) -> (MqttClient, u8) {
        let mut c = MqttClient::raw(addr);
        let mut connect = Packet::connect(id, true, 60);
        if let Packet::Connect {
            username,
            password: pw,
            ..
        } = &mut connect
        {
            *username = Some(user.into());
            *pw = Some(password.as_bytes().to_vec());
        }
        c.send(&connect);
        match c.recv() {
            Packet::ConnAck { code, .. } => (c, code.0),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Sends one packet.
    pub fn send(&mut self, p: &Packet) {
        self.stream.write_all(&p.encode()).unwrap();
    }

    /// The next packet (fails on anything else).
    pub fn recv(&mut self) -> Packet {
        match read_packet(&mut self.stream, 1 << 21) {
            Ok(Some(p)) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// Asserts nothing arrives for a while.
    pub fn quiet(&mut self) {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match read_packet(&mut self.stream, 1 << 21) {
            Err(PacketError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("expected silence, got {other:?}"),
        }
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
    }

    /// Reads until the broker closes; fails on a reset or on a timeout.
    pub fn closed(&mut self) -> Duration {
        let t = Instant::now();
        let mut buf = [0u8; 256];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return t.elapsed(),
                Ok(_) => {}
                Err(e) => panic!("expected a clean close, got {e} after {:?}", t.elapsed()),
            }
        }
    }

    fn id(&mut self) -> u16 {
        self.next_id += 1;
        self.next_id
    }

    /// Subscribes; returns the SUBACK codes.
    pub fn subscribe(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        let packet_id = self.id();
        self.send(&Packet::subscribe(packet_id, filters.iter().copied()));
        match self.recv() {
            Packet::SubAck {
                packet_id: id,
                codes,
                ..
            } if id == packet_id => codes.into_iter().map(|c| c.0).collect(),
            other => panic!("expected SUBACK {packet_id}, got {other:?}"),
        }
    }

    /// Publishes; at QoS 1, waits for the PUBACK.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        let packet_id = (qos > 0).then(|| self.id());
        self.send(&Packet::publish(
            topic,
            payload,
            qos,
            retain,
            packet_id.unwrap_or(0),
        ));
        if let Some(id) = packet_id {
            assert_eq!(self.recv(), Packet::puback(id));
        }
    }

    /// The next message: (topic, payload, qos, retain, packet id).
    pub fn message(&mut self) -> (String, Vec<u8>, u8, bool, Option<u16>) {
        match self.recv() {
            Packet::Publish {
                topic,
                payload,
                qos,
                retain,
                dup,
                packet_id,
                ..
            } => {
                assert!(!dup);
                (topic, payload, qos, retain, packet_id)
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}
