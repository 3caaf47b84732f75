//! One client connection: CONNECT, then packets until DISCONNECT, EOF, a
//! protocol error or keep-alive expiry.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use super::{Outbox, Router, MAX_PACKET};
use crate::mqtt::{read_packet, topic, Packet};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `stream` until the session ends.
pub fn run(mut stream: TcpStream, router: &Router) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let outbox = Arc::new(Outbox::new(writer));
    let conn = router.next_conn();
    let (client_id, keep_alive) = match read_packet(&mut stream, MAX_PACKET) {
        Ok(Some(Packet::Connect {
            client_id,
            keep_alive,
            clean_session,
            ..
        })) => {
            if client_id.is_empty() && !clean_session {
                outbox.send(&Packet::ConnAck {
                    session_present: false,
                    code: 2,
                });
                return;
            }
            let id = if client_id.is_empty() {
                format!("auto-{conn}")
            } else {
                client_id
            };
            (id, keep_alive)
        }
        _ => return,
    };
    router.connect(conn, &client_id, Arc::clone(&outbox));
    if outbox.send(&Packet::ConnAck {
        session_present: false,
        code: 0,
    }) {
        let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        let _ = stream.set_read_timeout(idle);
        serve(&mut stream, router, conn, &outbox);
    }
    router.disconnect(conn);
    outbox.kill();
}

fn serve(stream: &mut TcpStream, router: &Router, conn: u64, outbox: &Outbox) {
    loop {
        let packet = match read_packet(stream, MAX_PACKET) {
            Ok(Some(p)) => p,
            // EOF, keep-alive expiry, a malformed packet: the session ends.
            Ok(None) | Err(_) => return,
        };
        match packet {
            Packet::Publish {
                topic: name,
                payload,
                qos,
                retain,
                packet_id,
                ..
            } => {
                if qos > 1 || !topic::valid_topic(&name) {
                    return;
                }
                if retain {
                    router.retain(&name, payload.clone(), qos);
                }
                router.publish(&name, &payload, qos);
                if let (1, Some(packet_id)) = (qos, packet_id) {
                    outbox.send(&Packet::PubAck { packet_id });
                }
            }
            Packet::Subscribe { packet_id, filters } => {
                let (codes, due) = router.subscribe(conn, &filters);
                outbox.send(&Packet::SubAck { packet_id, codes });
                for (name, payload, qos) in due {
                    let packet_id = (qos > 0).then(|| outbox.packet_id());
                    outbox.send(&Packet::Publish {
                        topic: name,
                        payload,
                        qos,
                        retain: true,
                        dup: false,
                        packet_id,
                    });
                }
            }
            Packet::Unsubscribe { packet_id, filters } => {
                router.unsubscribe(conn, &filters);
                outbox.send(&Packet::UnsubAck { packet_id });
            }
            Packet::PingReq => {
                outbox.send(&Packet::PingResp);
            }
            Packet::PubAck { .. } => {}
            Packet::Disconnect => return,
            // A second CONNECT or a server-only packet: a protocol error.
            _ => return,
        }
    }
}
