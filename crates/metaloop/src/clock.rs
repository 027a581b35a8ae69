//! The daemon's time: this machine's clock, or a driven clock that `POST /v1/admin/clock`
//! moves (`[clock] mode = "driven"`, docs/HA.md "A driven clock"). With a driven clock a
//! simulated spine and the supervisor share one virtual time, so a run's decisions depend on
//! its events alone — not on how fast the machine is, nor on a failover's pause.

use metaloop_core::time::Timestamp;
use std::sync::Arc;
use tokio::sync::watch;

/// This machine's clock, milliseconds since the epoch.
pub fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp(ms)
}

/// The supervisor's clock.
#[derive(Clone)]
pub enum Clock {
    Wall,
    Driven(Arc<Driven>),
}

/// A time that only moves forward, when told to.
pub struct Driven {
    now: watch::Sender<Timestamp>,
    /// The latest time up to which the leader has closed its cycles (and acknowledged
    /// their deliveries).
    settled: watch::Sender<Timestamp>,
}

impl Clock {
    /// A driven clock at `start`.
    pub fn driven(start: Timestamp) -> Clock {
        Clock::Driven(Arc::new(Driven {
            now: watch::channel(start).0,
            settled: watch::channel(start).0,
        }))
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::Wall => wall_clock(),
            Clock::Driven(d) => *d.now.borrow(),
        }
    }

    pub fn is_driven(&self) -> bool {
        matches!(self, Clock::Driven(_))
    }

    /// A driven clock behind `t` (a leader taking over from one that was driven further)
    /// moves to it; the wall clock is left alone. Returns the time now.
    pub fn catch_up(&self, t: Timestamp) -> Timestamp {
        if let Clock::Driven(d) = self {
            raise(&d.now, t);
            raise(&d.settled, t);
        }
        self.now()
    }

    /// Resolves once the clock reads `t` or later. The wall clock's caller sleeps instead:
    /// for it this never resolves.
    pub async fn reached(&self, t: Timestamp) {
        match self {
            Clock::Wall => std::future::pending().await,
            Clock::Driven(d) => {
                let mut rx = d.now.subscribe();
                let _ = rx.wait_for(|now| *now >= t).await;
            }
        }
    }

    /// The leader has closed every cycle that ends by `t`.
    pub fn settle(&self, t: Timestamp) {
        if let Clock::Driven(d) = self {
            raise(&d.settled, t);
        }
    }
}

/// Moves a time to `t` if it is earlier (waking its waiters), never back.
fn raise(time: &watch::Sender<Timestamp>, t: Timestamp) {
    time.send_if_modified(|now| {
        let behind = *now < t;
        if behind {
            *now = t;
        }
        behind
    });
}

impl Driven {
    /// Moves the time to `to`; refused when it is earlier than the time now.
    pub fn advance(&self, to: Timestamp) -> Result<(), Timestamp> {
        let now = *self.now.borrow();
        if to < now {
            return Err(now);
        }
        self.now.send_replace(to);
        Ok(())
    }

    /// Resolves once the leader has closed every cycle ending by `t`.
    pub async fn settled(&self, t: Timestamp) {
        let mut rx = self.settled.subscribe();
        let _ = rx.wait_for(|s| *s >= t).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_driven_clock_moves_forward_only_and_wakes_its_waiters() {
        let clock = Clock::driven(Timestamp::from_secs(100));
        let Clock::Driven(d) = &clock else {
            unreachable!()
        };
        assert_eq!(clock.now(), Timestamp::from_secs(100));
        assert_eq!(
            d.advance(Timestamp::from_secs(99)),
            Err(Timestamp::from_secs(100))
        );
        let waiter = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.reached(Timestamp::from_secs(400)).await })
        };
        d.advance(Timestamp::from_secs(300)).unwrap();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        d.advance(Timestamp::from_secs(400)).unwrap();
        waiter.await.unwrap();
        // catching up never goes back
        assert_eq!(
            clock.catch_up(Timestamp::from_secs(200)),
            Timestamp::from_secs(400)
        );
        assert_eq!(
            clock.catch_up(Timestamp::from_secs(700)),
            Timestamp::from_secs(700)
        );
        // settled: resolves once the leader says so
        let s = {
            let d = d.clone();
            tokio::spawn(async move { d.settled(Timestamp::from_secs(1000)).await })
        };
        clock.settle(Timestamp::from_secs(900));
        tokio::task::yield_now().await;
        assert!(!s.is_finished());
        clock.settle(Timestamp::from_secs(1000));
        s.await.unwrap();
    }

    #[test]
    fn the_wall_clock_is_the_machines() {
        let before = wall_clock();
        assert!(Clock::Wall.now() >= before);
        assert!(!Clock::Wall.is_driven());
    }
}
