//! systemd's D-Bus API (zbus, blocking through `zbus::block_on`): unit
//! state, `MainPID`, and `ReloadUnit` waited for through `JobRemoved`.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use emqx_handoff::faults::step;
use futures_core::Stream;
use zbus::{Connection, OwnedObjectPath};

use super::{BusError, JobOutcome, ServiceManager, UnitStatus};

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn reload_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn subscribe(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
trait Service {
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn status_text(&self) -> zbus::Result<String>;
}

/// The system bus's systemd.
pub struct SystemBus {
    conn: Connection,
}

impl SystemBus {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` or the default).
    pub fn connect() -> Result<SystemBus, BusError> {
        zbus::block_on(Connection::system())
            .map(|conn| SystemBus { conn })
            .map_err(BusError::Connect)
    }

    async fn status(&self, name: &str) -> zbus::Result<Option<UnitStatus>> {
        let manager = ManagerProxy::new(&self.conn).await?;
        let path = match manager.get_unit(name).await {
            Ok(p) => p,
            Err(zbus::Error::MethodError(err, _, _))
                if err.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let unit = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let service = ServiceProxy::builder(&self.conn)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        Ok(Some(UnitStatus {
            load_state: unit.load_state().await?,
            active_state: unit.active_state().await?,
            main_pid: service.main_pid().await?,
            status_text: service.status_text().await.unwrap_or_default(),
        }))
    }

    async fn reload_job(&self, name: &str, timeout: Duration) -> zbus::Result<JobOutcome> {
        let manager = ManagerProxy::new(&self.conn).await?;
        // Listen first: the job can end before ReloadUnit's answer is read.
        let mut removed = manager.receive_job_removed().await?;
        manager.subscribe().await?;
        // "fail": never cancel an operator's queued stop or restart.
        let job = manager.reload_unit(name, "fail").await?;
        let deadline = Deadline::new(timeout);
        loop {
            let next = poll_fn(|cx| match Pin::new(&mut removed).poll_next(cx) {
                Poll::Ready(item) => Poll::Ready(Some(item)),
                Poll::Pending => Pin::new(&mut &deadline).poll(cx).map(|()| None),
            })
            .await;
            let Some(item) = next else {
                return Ok(JobOutcome::NoAnswer(timeout));
            };
            let Some(signal) = item else {
                return Err(zbus::Error::Failure("the bus connection closed".into()));
            };
            let args = signal.args()?;
            if args.job == job {
                return Ok(JobOutcome::from_result(&args.result));
            }
        }
    }
}

impl ServiceManager for SystemBus {
    fn unit(&self, name: &str) -> Result<Option<UnitStatus>, BusError> {
        let asking = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Status {
            unit: name.to_string(),
            source: e,
        };
        step("hook::before_unit").map_err(|e| asking(e.into()))?;
        let status = zbus::block_on(self.status(name)).map_err(|e| asking(e.into()))?;
        step("hook::after_unit").map_err(|e| asking(e.into()))?;
        Ok(status)
    }

    fn reload(&self, name: &str, timeout: Duration) -> Result<JobOutcome, BusError> {
        let asking = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Reload {
            unit: name.to_string(),
            source: e,
        };
        step("hook::before_reload").map_err(|e| asking(e.into()))?;
        let outcome =
            zbus::block_on(self.reload_job(name, timeout)).map_err(|e| asking(e.into()))?;
        step("hook::after_reload").map_err(|e| asking(e.into()))?;
        Ok(outcome)
    }
}

/// A future that completes at a deadline, woken by a timer thread (zbus's
/// own runtime has no public timer).
struct Deadline {
    at: Instant,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Deadline {
    fn new(after: Duration) -> Deadline {
        let at = Instant::now() + after;
        let waker: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let shared = Arc::clone(&waker);
        std::thread::spawn(move || {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            if let Ok(mut w) = shared.lock() {
                if let Some(w) = w.take() {
                    w.wake();
                }
            }
        });
        Deadline { at, waker }
    }
}

impl Future for &Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        if let Ok(mut w) = self.waker.lock() {
            *w = Some(cx.waker().clone());
        }
        // The timer may have fired between the check and storing the waker.
        if Instant::now() >= self.at {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
