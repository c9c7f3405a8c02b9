//! The way to a role one worker at a time holds (the gate, the scheduler): set while this worker
//! holds it, so the control consumer can ask it, and answer nothing otherwise.

use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

pub(super) struct Handle<A> {
    asks: Mutex<Option<mpsc::Sender<A>>>,
}

impl<A> Default for Handle<A> {
    fn default() -> Self {
        Handle {
            asks: Mutex::new(None),
        }
    }
}

impl<A> Handle<A> {
    /// Asks the role's task, if this worker holds the role.
    pub(super) async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> A) -> Option<T> {
        let tx = self.asks.lock().expect("role handle").clone()?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    pub(super) fn set(&self, tx: Option<mpsc::Sender<A>>) {
        *self.asks.lock().expect("role handle") = tx;
    }
}
