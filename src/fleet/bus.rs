//! The fleet's notifications: one pub/sub connection per gateway, fanned out locally.
//!
//! Two kinds of channel are listened to:
//! - the **control** channel, always: purges and back-offs, re-broadcast to
//!   the cache and the shield as [`Control`] events;
//! - a **page** channel, only while this gateway waits for another gateway's
//!   fill of that page. Local waiters share one Redis subscription per page
//!   ([`Bus::subscribe`]) and are woken through a `watch` counter, so a
//!   notification that arrives between a waiter's check and its wait is not lost.
//!
//! Redis pub/sub is fire-and-forget: messages published while this
//! connection is down are gone. So the connection is pinged and re-made when
//! it stops answering, a [`Control::Reconnected`] event lets listeners catch
//! up on what they may have missed, and waiters never rely on a notification
//! alone (they also check on a jittered interval).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::{broadcast, watch};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// How often the subscriber connection is pinged: a hung Redis is noticed within about this.
const PING_EVERY: Duration = Duration::from_millis(500);

/// Longest pause between reconnection attempts.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Control events queued per listener before the slowest starts losing them
/// (a lagging listener resynchronises as after a reconnect).
const CONTROL_QUEUE: usize = 1024;

/// What the control channel said, or that it may have missed something.
#[derive(Debug, Clone)]
pub enum Control {
    /// A message another gateway published (its text; listeners parse their own).
    Message(Arc<str>),
    /// The subscriber (re)connected: messages sent meanwhile may be lost.
    Reconnected,
}

struct Channel {
    wake: watch::Sender<u64>,
    users: usize,
}

pub struct Bus {
    client: redis::Client,
    control_channel: String,
    timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
    sink: Mutex<Option<PubSubSink>>,
    control: broadcast::Sender<Control>,
    connected: AtomicBool,
    metrics: Arc<Metrics>,
}

/// A place among the local waiters of one page channel; leaving drops the subscription when last.
pub struct Subscription {
    bus: Arc<Bus>,
    channel: String,
    rx: watch::Receiver<u64>,
}

impl Subscription {
    /// Wait for the next notification on the channel (after the last one seen).
    pub async fn notified(&mut self) {
        if self.rx.changed().await.is_err() {
            // The bus is gone: nothing will ever be announced.
            std::future::pending::<()>().await;
        }
    }

    /// Mark every notification so far as seen.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.bus.lock_channels();
        let last = match map.get_mut(&self.channel) {
            Some(c) => {
                c.users -= 1;
                c.users == 0
            }
            None => false,
        };
        if last {
            map.remove(&self.channel);
            drop(map);
            // Fire and forget (a stale subscription only costs ignored messages), and only
            // while a runtime runs: a runtime shutting down drops its tasks, and this with them.
            if let (Some(mut sink), Ok(runtime)) =
                (self.bus.sink(), tokio::runtime::Handle::try_current())
            {
                let channel = std::mem::take(&mut self.channel);
                let timeout = self.bus.timeout;
                runtime.spawn(async move {
                    let _ = tokio::time::timeout(timeout, sink.unsubscribe(channel)).await;
                });
            }
        }
    }
}

impl Bus {
    pub fn new(
        client: redis::Client,
        control_channel: String,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Bus {
            client,
            control_channel,
            timeout,
            channels: Mutex::default(),
            sink: Mutex::default(),
            control: broadcast::channel(CONTROL_QUEUE).0,
            connected: AtomicBool::new(false),
            metrics,
        })
    }

    fn lock_channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sink(&self) -> Option<PubSubSink> {
        self.sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Is the subscriber connection up?
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Control events from now on.
    pub fn control(&self) -> broadcast::Receiver<Control> {
        self.control.subscribe()
    }

    /// Listen to a page channel. Returns whether Redis confirmed the subscription
    /// (if not, the caller must rely on its fallback checks).
    pub async fn subscribe(self: &Arc<Self>, channel: &str) -> (Subscription, bool) {
        let (rx, first) = {
            let mut map = self.lock_channels();
            match map.get_mut(channel) {
                Some(c) => {
                    c.users += 1;
                    (c.wake.subscribe(), false)
                }
                None => {
                    let (wake, rx) = watch::channel(0);
                    map.insert(channel.to_owned(), Channel { wake, users: 1 });
                    (rx, true)
                }
            }
        };
        let sub = Subscription {
            bus: self.clone(),
            channel: channel.to_owned(),
            rx,
        };
        let confirmed = if first {
            match self.sink() {
                Some(mut sink) => matches!(
                    tokio::time::timeout(self.timeout, sink.subscribe(channel)).await,
                    Ok(Ok(()))
                ),
                None => false,
            }
        } else {
            self.is_connected()
        };
        (sub, confirmed)
    }

    fn dispatch(&self, msg: redis::Msg) {
        self.metrics.fleet.notifications_received.inc();
        let channel = msg.get_channel_name();
        if channel == self.control_channel {
            if let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) {
                let _ = self.control.send(Control::Message(Arc::from(text)));
            }
            return;
        }
        if let Some(c) = self.lock_channels().get(channel) {
            c.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Keep the subscriber connection up until `shutdown`. Spawned once per gateway.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let mut pause = Duration::from_millis(50);
        let mut ever_connected = false;
        loop {
            if let Some((sink, stream)) = tokio::select! {
                c = self.connect() => c,
                _ = shutdown.triggered() => return,
            } {
                pause = Duration::from_millis(50);
                if ever_connected {
                    tracing::info!("fleet notifications reconnected");
                }
                ever_connected = true;
                self.serve(sink, stream, &shutdown).await;
                *self.sink.lock().unwrap_or_else(PoisonError::into_inner) = None;
                self.connected.store(false, Ordering::Release);
                if shutdown.is_triggered() {
                    return;
                }
                tracing::warn!(
                    "fleet notifications lost: reconnecting (waiters fall back to checks)"
                );
            }
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            tokio::select! {
                _ = tokio::time::sleep(pause.mul_f64(jitter)) => {}
                _ = shutdown.triggered() => return,
            }
            pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
        }
    }

    /// Connect, subscribe to the control channel and every page channel waited on now.
    async fn connect(&self) -> Option<(PubSubSink, redis::aio::PubSubStream)> {
        let pubsub = tokio::time::timeout(self.timeout * 4, self.client.get_async_pubsub())
            .await
            .ok()?
            .ok()?;
        let (mut sink, stream) = pubsub.split();
        let mut channels: Vec<String> = self.lock_channels().keys().cloned().collect();
        channels.push(self.control_channel.clone());
        tokio::time::timeout(self.timeout * 4, sink.subscribe(&channels))
            .await
            .ok()?
            .ok()?;
        *self.sink.lock().unwrap_or_else(PoisonError::into_inner) = Some(sink.clone());
        self.connected.store(true, Ordering::Release);
        let _ = self.control.send(Control::Reconnected);
        // Wake every page waiter: whatever was announced while disconnected is worth a check.
        for c in self.lock_channels().values() {
            c.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
        Some((sink, stream))
    }

    /// Dispatch messages until the connection ends or stops answering pings.
    async fn serve(
        &self,
        mut sink: PubSubSink,
        mut stream: redis::aio::PubSubStream,
        shutdown: &Shutdown,
    ) {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.dispatch(msg),
                    None => return,
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(self.timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return;
                    }
                }
                _ = shutdown.triggered() => return,
            }
        }
    }
}
