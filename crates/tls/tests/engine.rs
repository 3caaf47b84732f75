//! Two engines, a client and a server, joined by in-memory queues: the
//! handshake, data both ways, mutual TLS and the peer's name, and a move
//! (freeze, serialize through JSON as the brokers do, adopt) at awkward
//! moments: half a record in flight, output not yet written, a key
//! update right after. A thaw resumes the same engine. Bad input is an
//! error, never a hang.

use emqx_testkit::Pki;
use emqx_tls::{
    ClientFiles, ConfigError, Engine, EngineError, Progress, ServerFiles, Side, TlsConfig,
    TlsState, Verify,
};

fn server_config(pki: &Pki, verify: Verify) -> TlsConfig {
    let s = pki.server();
    TlsConfig::server(&ServerFiles {
        cert: s.cert,
        key: s.key,
        ca: Some(pki.ca()),
        verify,
    })
    .unwrap()
}

fn client_config(pki: &Pki, with_cert: bool) -> TlsConfig {
    let c = pki.client();
    TlsConfig::client(&ClientFiles {
        ca: pki.ca(),
        identity: with_cert.then_some((c.cert, c.key)),
    })
    .unwrap()
}

/// Moves what `from` wrote into `to`'s incoming queue.
fn pass(from: &mut Engine, to: &mut Engine) {
    let mut wire = Vec::new();
    from.write_to(&mut wire).unwrap();
    to.incoming().extend_from_slice(&wire);
}

/// Handshakes until both are established.
fn handshake(client: &mut Engine, server: &mut Engine) -> Result<(), EngineError> {
    let mut plain = Vec::new();
    for _ in 0..10 {
        let c = client.process(&mut plain)?;
        pass(client, server);
        let s = server.process(&mut plain)?;
        pass(server, client);
        if c == Progress::Established && s == Progress::Established {
            assert!(plain.is_empty());
            return Ok(());
        }
    }
    panic!("no handshake in 10 rounds");
}

fn pair(pki: &Pki) -> (Engine, Engine) {
    let mut client =
        Engine::new(&client_config(pki, false), Side::Client, Some("localhost")).unwrap();
    let mut server = Engine::new(&server_config(pki, Verify::None), Side::Server, None).unwrap();
    handshake(&mut client, &mut server).unwrap();
    (client, server)
}

/// Sends `msg` from `a` to `b` and returns what `b` decrypted.
fn say(a: &mut Engine, b: &mut Engine, msg: &[u8]) -> Vec<u8> {
    a.send(msg).unwrap();
    pass(a, b);
    let mut plain = Vec::new();
    b.process(&mut plain).unwrap();
    plain
}

/// Freezes `server` and takes it over as another process would: the
/// state through JSON, a new engine from it.
fn moved(server: &mut Engine, config: &TlsConfig) -> Engine {
    let state = server.freeze().unwrap();
    let json = serde_json::to_vec(&state).unwrap();
    let state: TlsState = serde_json::from_slice(&json).unwrap();
    Engine::adopt(config, Side::Server, &state).unwrap()
}

#[test]
fn data_flows_both_ways_over_tls_1_3() {
    let pki = Pki::new();
    let (mut client, mut server) = pair(&pki);
    assert_eq!(server.version(), Some("TLSv1.3"));
    assert_eq!(say(&mut client, &mut server, b"ping"), b"ping");
    assert_eq!(say(&mut server, &mut client, b"pong"), b"pong");
    let big = vec![7u8; 100_000];
    assert_eq!(say(&mut client, &mut server, &big), big, "several records");
    assert_eq!(server.peer_cn(), None);
}

#[test]
fn a_move_with_half_a_record_in_flight_and_a_key_update_after_loses_nothing() {
    let pki = Pki::new();
    let config = server_config(&pki, Verify::None);
    let (mut client, mut server) = pair(&pki);
    // Half a record reaches the old side before the freeze...
    client.send(b"split across the move").unwrap();
    let mut wire = Vec::new();
    client.write_to(&mut wire).unwrap();
    let half = wire.len() / 2;
    server.incoming().extend_from_slice(&wire[..half]);
    let mut plain = Vec::new();
    assert_eq!(server.process(&mut plain).unwrap(), Progress::Established);
    assert!(plain.is_empty(), "nothing whole yet");
    // ...and unwritten output is still queued on it.
    server.send(b"queued before the freeze").unwrap();
    let mut new = moved(&mut server, &config);
    assert!(
        matches!(server.send(b"x"), Err(EngineError::Frozen)),
        "the old side is done"
    );
    new.incoming().extend_from_slice(&wire[half..]);
    new.process(&mut plain).unwrap();
    assert_eq!(plain, b"split across the move");
    pass(&mut new, &mut client);
    let mut got = Vec::new();
    client.process(&mut got).unwrap();
    assert_eq!(got, b"queued before the freeze");
    // Both sides update their keys after the move; data still flows.
    client.key_update().unwrap();
    assert_eq!(
        say(&mut client, &mut new, b"after the client's update"),
        b"after the client's update"
    );
    new.key_update().unwrap();
    assert_eq!(
        say(&mut new, &mut client, b"after the server's update"),
        b"after the server's update"
    );
    // A connection moved twice (it must be serializable again).
    let mut third = moved(&mut new, &config);
    assert_eq!(say(&mut client, &mut third, b"twice moved"), b"twice moved");
}

#[test]
fn a_thaw_resumes_the_frozen_engine() {
    let pki = Pki::new();
    let (mut client, mut server) = pair(&pki);
    let state = server.freeze().unwrap();
    assert!(!state.blob.is_empty());
    assert_eq!(state.version, "TLSv1.3");
    server.thaw().unwrap();
    assert_eq!(say(&mut client, &mut server, b"as before"), b"as before");
    assert_eq!(say(&mut server, &mut client, b"and back"), b"and back");
}

#[test]
fn a_handshake_in_progress_cannot_move() {
    let pki = Pki::new();
    let mut client =
        Engine::new(&client_config(&pki, false), Side::Client, Some("localhost")).unwrap();
    let mut server = Engine::new(&server_config(&pki, Verify::None), Side::Server, None).unwrap();
    let mut plain = Vec::new();
    client.process(&mut plain).unwrap();
    pass(&mut client, &mut server);
    assert_eq!(server.process(&mut plain).unwrap(), Progress::Handshaking);
    assert!(matches!(server.freeze(), Err(EngineError::Handshaking)));
}

#[test]
fn mutual_tls_names_the_peer_and_its_sni_across_a_move_and_refuses_a_client_without_a_certificate()
{
    let pki = Pki::new();
    let required = server_config(&pki, Verify::Peer { required: true });
    let mut client =
        Engine::new(&client_config(&pki, true), Side::Client, Some("localhost")).unwrap();
    let mut server = Engine::new(&required, Side::Server, None).unwrap();
    handshake(&mut client, &mut server).unwrap();
    assert_eq!(server.peer_cn(), Some("device-1"));
    assert_eq!(server.server_name(), Some("localhost"), "the client's SNI");
    // The names move with the state (s2n restores neither).
    let new = moved(&mut server, &required);
    assert_eq!(new.peer_cn(), Some("device-1"));
    assert_eq!(new.server_name(), Some("localhost"));
    let mut anonymous =
        Engine::new(&client_config(&pki, false), Side::Client, Some("localhost")).unwrap();
    let mut server = Engine::new(&required, Side::Server, None).unwrap();
    assert!(handshake(&mut anonymous, &mut server).is_err());
}

#[test]
fn plain_mqtt_and_oversized_records_are_errors() {
    let pki = Pki::new();
    let mut server = Engine::new(&server_config(&pki, Verify::None), Side::Server, None).unwrap();
    server
        .incoming()
        .extend_from_slice(&[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T']);
    assert!(matches!(
        server.process(&mut Vec::new()),
        Err(EngineError::NotTls(0x10))
    ));
    let mut server = Engine::new(&server_config(&pki, Verify::None), Side::Server, None).unwrap();
    server.incoming().extend_from_slice(&[22, 3, 1, 0xff, 0xff]);
    assert!(matches!(
        server.process(&mut Vec::new()),
        Err(EngineError::RecordTooLong(_))
    ));
    // A truncated ClientHello is waited for, not an error.
    let mut server = Engine::new(&server_config(&pki, Verify::None), Side::Server, None).unwrap();
    server
        .incoming()
        .extend_from_slice(&[22, 3, 1, 0, 200, 1, 0]);
    assert_eq!(
        server.process(&mut Vec::new()).unwrap(),
        Progress::Handshaking
    );
}

#[test]
fn unreadable_files_and_a_key_of_another_certificate_are_refused_by_name() {
    let pki = Pki::new();
    let s = pki.server();
    let stray = pki.stray_key("stray");
    let files = |cert, key| ServerFiles {
        cert,
        key,
        ca: None,
        verify: Verify::None,
    };
    let e = TlsConfig::server(&files(s.cert.clone(), stray.clone()))
        .err()
        .unwrap();
    assert!(matches!(e, ConfigError::Mismatch { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "the key {} does not match the certificate",
            stray.display()
        )),
        "{e}"
    );
    let missing = pki.dir.path().join("missing.pem");
    let e = TlsConfig::server(&files(missing.clone(), s.key.clone()))
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            ConfigError::Read {
                what: "certificate",
                ..
            }
        ),
        "{e}"
    );
    let e = TlsConfig::server(&files(s.key.clone(), s.key.clone()))
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                what: "certificate",
                ..
            }
        ),
        "{e}"
    );
    let verify = ServerFiles {
        verify: Verify::Peer { required: false },
        ..files(s.cert.clone(), s.key.clone())
    };
    assert!(matches!(TlsConfig::server(&verify), Err(ConfigError::NoCa)));
}

#[test]
fn a_handshake_not_begun_moves_as_its_bytes_and_completes_on_the_other_side() {
    let pki = Pki::new();
    let config = server_config(&pki, Verify::None);
    let mut client =
        Engine::new(&client_config(&pki, false), Side::Client, Some("localhost")).unwrap();
    let mut server = Engine::new(&config, Side::Server, None).unwrap();
    let mut plain = Vec::new();
    client.process(&mut plain).unwrap();
    let mut hello = Vec::new();
    client.write_to(&mut hello).unwrap();
    // Half the ClientHello: s2n has been given nothing yet.
    server
        .incoming()
        .extend_from_slice(&hello[..hello.len() / 2]);
    assert_eq!(server.process(&mut plain).unwrap(), Progress::Handshaking);
    assert!(server.movable());
    let state = server.freeze().unwrap();
    assert!(state.blob.is_empty());
    let mut new = Engine::adopt(&config, Side::Server, &state).unwrap();
    new.incoming().extend_from_slice(&hello[hello.len() / 2..]);
    assert_eq!(new.process(&mut plain).unwrap(), Progress::Handshaking);
    assert!(!new.movable(), "in the middle of its handshake now");
    pass(&mut new, &mut client);
    handshake(&mut client, &mut new).unwrap();
    assert_eq!(say(&mut client, &mut new, b"hello"), b"hello");
}
