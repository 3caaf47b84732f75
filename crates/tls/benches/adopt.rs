//! What moving one TLS connection costs inside a broker, per step,
//! printed (never asserted): a fresh s2n connection with its
//! configuration, `freeze` (serialize) in the old broker and `adopt`
//! (deserialize) in the new one, against the baseline of a full
//! handshake of the same pair. BENCH_ADOPT=N connections (default 2000).

use std::time::{Duration, Instant};

use emqx_testkit::Pki;
use emqx_tls::{ClientFiles, Engine, Progress, ServerFiles, Side, Spares, TlsConfig, Verify};

fn pass(from: &mut Engine, to: &mut Engine) {
    let mut wire = Vec::new();
    from.write_to(&mut wire).unwrap();
    to.incoming().extend_from_slice(&wire);
}

fn handshake(client: &mut Engine, server: &mut Engine) {
    let mut plain = Vec::new();
    for _ in 0..10 {
        let c = client.process(&mut plain).unwrap();
        pass(client, server);
        let s = server.process(&mut plain).unwrap();
        pass(server, client);
        if c == Progress::Established && s == Progress::Established {
            return;
        }
    }
    panic!("no handshake in 10 rounds");
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let n: usize = std::env::var("BENCH_ADOPT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let pki = Pki::new();
    let s = pki.server();
    let server = TlsConfig::server(&ServerFiles {
        cert: s.cert,
        key: s.key,
        ca: Some(pki.ca()),
        verify: Verify::None,
    })
    .unwrap();
    let client = TlsConfig::client(&ClientFiles {
        ca: pki.ca(),
        identity: None,
    })
    .unwrap();
    let began = Instant::now();
    let mut pairs: Vec<(Engine, Engine)> = (0..n)
        .map(|_| {
            let mut c = Engine::new(&client, Side::Client, Some("localhost")).unwrap();
            let mut s = Engine::new(&server, Side::Server, None).unwrap();
            handshake(&mut c, &mut s);
            (c, s)
        })
        .collect();
    let handshakes = began.elapsed();
    let began = Instant::now();
    let fresh: Vec<Engine> = (0..n)
        .map(|_| Engine::new(&server, Side::Server, None).unwrap())
        .collect();
    let new_conn = began.elapsed();
    drop(fresh);
    let began = Instant::now();
    let states: Vec<_> = pairs.iter_mut().map(|(_, s)| s.freeze().unwrap()).collect();
    let freeze = began.elapsed();
    let began = Instant::now();
    let adopted: Vec<Engine> = states
        .iter()
        .map(|st| Engine::adopt(&server, Side::Server, st).unwrap())
        .collect();
    let adopt = began.elapsed();
    drop(adopted);
    let began = Instant::now();
    let mut spares = Spares::default();
    spares.fill(&server, Side::Server, n);
    let fill = began.elapsed();
    let began = Instant::now();
    let adopted: Vec<Engine> = states
        .iter()
        .map(|st| Engine::adopt_into(spares.take(), &server, Side::Server, st).unwrap())
        .collect();
    let into_spare = began.elapsed();
    let blob = states.first().map_or(0, |s| s.blob.bytes().len());
    println!("{n} TLS connections, per connection (us): handshake {:.1}, new s2n connection {:.1}, freeze {:.1}, adopt {:.1} (blob {blob} B)",
        per(handshakes, n), per(new_conn, n), per(freeze, n), per(adopt, n));
    println!("with spares made ahead: making one {:.1}, adopting into one {:.1} ({:.1}x faster than adopt)",
        per(fill, n), per(into_spare, n), adopt.as_secs_f64() / into_spare.as_secs_f64());
    println!(
        "a move costs {:.1}% of a handshake",
        100.0 * (per(freeze, n) + per(adopt, n)) / per(handshakes, n)
    );
    drop(adopted);
}
