//! How load clients reach the broker: plain TCP, TLS, MQTT over
//! WebSocket, or over WebSocket over TLS; which ones a run offers, taken
//! in turn by slot.

use std::net::SocketAddr;

use crate::LoadOptions;

/// How a client reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl Transport {
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

/// The transports clients take in turn, by slot: plain TCP, TLS, ws,
/// wss, those the options name (every client over TLS: TLS and wss;
/// every client over WebSocket: ws and wss).
pub fn offered(opts: &LoadOptions) -> Vec<Transport> {
    let every_tls = opts.tls.as_ref().is_some_and(|t| t.every);
    let ws = opts.ws.as_ref();
    let every_ws = ws.is_some_and(|w| w.every);
    let offered = [
        (Transport::Tcp, !every_tls && !every_ws),
        (Transport::Tls, opts.tls.is_some() && !every_ws),
        (
            Transport::Ws,
            !every_tls && ws.is_some_and(|w| w.ws.is_some()),
        ),
        (
            Transport::Wss,
            opts.tls.is_some() && ws.is_some_and(|w| w.wss.is_some()),
        ),
    ];
    offered.into_iter().filter(|o| o.1).map(|o| o.0).collect()
}

/// How and where a client connects on its `attempts`-th attempt: the
/// transports of `offered` take turns by slot (always the same ones for
/// a client), a storm client's by attempt too, so the storm runs over
/// each; plain TCP goes to the plain listeners in turn over attempts.
pub fn choose(
    opts: &LoadOptions,
    offered: &[Transport],
    slot: usize,
    attempts: u64,
    storm: bool,
) -> (Transport, SocketAddr) {
    let turn = (slot as u64).wrapping_add(attempts) as usize;
    let n = offered.len().max(1);
    let transport = match storm {
        true => offered.get(turn % n),
        false => offered.get(slot % n),
    };
    let transport = transport.copied().unwrap_or(Transport::Tcp);
    let ws = opts.ws.as_ref();
    let one = match transport {
        Transport::Tcp => None,
        Transport::Tls => opts.tls.as_ref().map(|t| t.addr),
        Transport::Ws => ws.and_then(|w| w.ws),
        Transport::Wss => ws.and_then(|w| w.wss),
    };
    // A storm's turn picked the transport; what is left of it picks the
    // plain listener (else a storm on 2 transports and 2 listeners
    // would reach only the first).
    let plain = match storm {
        true => turn / n,
        false => turn,
    };
    let addr = one.unwrap_or_else(|| opts.addrs[plain % opts.addrs.len().max(1)]);
    (transport, addr)
}

#[cfg(test)]
mod tests {
    //! Which transports a run offers, in slot order.

    use super::*;
    use crate::{LoadOptions, LoadWs};
    use std::net::SocketAddr;

    #[test]
    fn transports_take_turns_in_a_fixed_order() {
        let a: SocketAddr = ([127, 0, 0, 1], 1).into();
        let plain = LoadOptions::switching(vec![a]);
        assert_eq!(offered(&plain), [Transport::Tcp]);
        let tls = plain.clone().over_tls(Some((a, "ca.pem".into())));
        // As before WebSocket: every other client over TLS.
        assert_eq!(offered(&tls), [Transport::Tcp, Transport::Tls]);
        let all = tls.clone().over_websocket(Some((a, a)));
        use Transport::*;
        assert_eq!(offered(&all), [Tcp, Tls, Ws, Wss]);
        // wss needs the TLS clients' CA; ws alone does not.
        let ws_only = LoadOptions {
            ws: Some(LoadWs {
                ws: Some(a),
                wss: None,
                path: "/mqtt".into(),
                every: false,
            }),
            ..plain.clone()
        };
        assert_eq!(offered(&ws_only), [Tcp, Ws]);
        assert_eq!(offered(&plain.over_websocket(Some((a, a)))), [Tcp, Ws]);
        let mut every = all.clone();
        if let Some(t) = every.tls.as_mut() {
            t.every = true;
        }
        assert_eq!(offered(&every), [Tls, Wss]);
        let mut every_ws = all;
        if let Some(w) = every_ws.ws.as_mut() {
            w.every = true;
        }
        assert_eq!(offered(&every_ws), [Ws, Wss]);
        if let Some(t) = every_ws.tls.as_mut() {
            t.every = true;
        }
        assert_eq!(offered(&every_ws), [Wss]);
    }

    #[test]
    fn a_storm_reaches_every_transport_and_both_plain_listeners() {
        let a: SocketAddr = ([127, 0, 0, 1], 1).into();
        let b: SocketAddr = ([127, 0, 0, 1], 2).into();
        let t: SocketAddr = ([127, 0, 0, 1], 3).into();
        let opts = LoadOptions::switching(vec![a, b])
            .over_tls(Some((t, "ca.pem".into())))
            .over_websocket(Some((t, t)));
        let all = offered(&opts);
        let mut seen = std::collections::BTreeSet::new();
        for attempts in 1..=16 {
            let (how, at) = choose(&opts, &all, 2, attempts, true);
            seen.insert((format!("{how:?}"), at.port()));
        }
        let want = ["Tcp:1", "Tcp:2", "Tls:3", "Ws:3", "Wss:3"];
        let got: Vec<String> = seen.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        assert_eq!(got, want);
        // Another client keeps its transport, and rotates plain listeners.
        let plain: std::collections::BTreeSet<u16> = (1..=4)
            .map(|k| choose(&opts, &all, 4, k, false))
            .inspect(|(how, _)| assert_eq!(*how, Transport::Tcp))
            .map(|(_, at)| at.port())
            .collect();
        assert_eq!(plain.into_iter().collect::<Vec<_>>(), [1, 2]);
    }
}
