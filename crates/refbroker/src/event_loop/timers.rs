//! The loop's timers, once per tick: CONNECT deadline, keep-alive (1.5x),
//! close wait; the summary line; and the answer to a close-all once it
//! is done.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Loop;
use crate::broker::End;
use crate::{CLOSE_WAIT, CONNECT_TIMEOUT};

impl Loop {
    pub(super) fn timers(&mut self) {
        let now = Instant::now();
        let mut ends = Vec::new();
        let mut drops = Vec::new();
        for (t, c) in &self.conns.map {
            if let Some(since) = c.closing_since {
                if now.duration_since(since) >= CLOSE_WAIT {
                    drops.push(*t);
                }
            } else if !c.connected && now.duration_since(c.opened) >= CONNECT_TIMEOUT {
                ends.push((
                    *t,
                    End::Idle(format!("no CONNECT within {} s", CONNECT_TIMEOUT.as_secs())),
                ));
            } else if c.keep_alive > 0
                && now.duration_since(c.last_read)
                    >= Duration::from_millis(u64::from(c.keep_alive) * 1500)
            {
                ends.push((
                    *t,
                    End::Idle(format!(
                        "keep-alive expired (no packet within 1.5 × {} s)",
                        c.keep_alive
                    )),
                ));
            }
        }
        for (t, end) in ends {
            self.end(t, end);
        }
        for t in drops {
            self.drop_conn(t);
        }
        self.broker.expire(now, &mut self.conns);
    }

    /// The summary line, once per [`crate::summary_every`].
    pub(super) fn summary(&mut self) {
        let Some(every) = crate::summary_every() else {
            return;
        };
        let since = self.summarized.elapsed();
        if since >= every {
            self.summarized = Instant::now();
            self.broker.summary(self.conns.map.len(), since);
        }
    }

    pub(super) fn answer_close_all(&mut self) {
        if self.closing_all.is_empty() {
            return;
        }
        let now = Instant::now();
        if !self.conns.map.is_empty() && self.closing_all.iter().all(|(_, d)| now < *d) {
            return;
        }
        let left: Vec<usize> = self.conns.map.keys().copied().collect();
        for t in left {
            self.drop_conn(t);
        }
        self.live.store(0, Ordering::SeqCst);
        for (reply, _) in self.closing_all.drain(..) {
            let _ = reply.send(());
        }
    }
}
