//! Leader election among the replicas, for work that exactly one of them may do at a time (CSR
//! approval): the leader holds `leaders/<name>` on an etcd lease and renews it; the others wait
//! for the key to go.
//!
//! A leader that cannot renew its lease stops at once, well before the lease runs out (it
//! renews three times per lease), so two leaders never act at the same moment; another replica
//! takes over once the lease has expired, within [`TTL`] and a second.

use std::time::Duration;

use kindling_etcd::{Compare, Op, Range, Txn};
use tokio::sync::watch;

use crate::{Store, StoreError};

/// The lease's time to live, in seconds.
pub const TTL: i64 = 5;

/// One election, by name, as one candidate.
#[derive(Debug, Clone)]
pub struct Election {
    store: Store,
    name: String,
    /// Who this replica is, written into the key for whoever looks.
    me: String,
}

/// This replica leads until [`Leadership::lost`] says otherwise.
pub struct Leadership {
    lost: watch::Receiver<bool>,
    renewing: tokio::task::JoinHandle<()>,
    lease: i64,
    store: Store,
    held: Compare,
}

impl Election {
    pub fn new(store: Store, name: &str, me: &str) -> Election {
        Election {
            store,
            name: name.to_string(),
            me: me.to_string(),
        }
    }

    fn key(&self) -> Vec<u8> {
        self.store.key(&format!("leaders/{}", self.name))
    }

    /// The replica that leads now, if any.
    pub async fn leader(&self) -> Result<Option<String>, StoreError> {
        let found = self
            .store
            .etcd
            .get(&self.key())
            .await
            .map_err(|source| StoreError::Etcd {
                what: format!("reading the {} leader", self.name),
                source: Box::new(source),
            })?;
        Ok(found.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// Waits until this replica leads.
    pub async fn lead(&self) -> Leadership {
        let mut failing: Option<String> = None;
        loop {
            let tried = match self.leader().await {
                Ok(Some(_)) => Ok(None),
                Ok(None) => self.try_lead().await,
                Err(e) => Err(e),
            };
            match tried {
                Ok(Some(leadership)) => {
                    tracing::info!("this replica leads {} now", self.name);
                    return leadership;
                }
                Ok(None) => failing = None,
                Err(e) => {
                    let message = e.to_string();
                    if failing.as_deref() != Some(message.as_str()) {
                        tracing::warn!("electing the {} leader: {message}", self.name);
                        failing = Some(message);
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Leads within `wait`, or says who leads instead.
    pub async fn lead_within(&self, wait: Duration) -> Result<Leadership, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(leadership) = self.try_lead().await? {
                return Ok(leadership);
            }
            if tokio::time::Instant::now() >= deadline {
                let holder = self.leader().await?.unwrap_or_default();
                return Err(StoreError::Busy {
                    what: self.name.clone(),
                    holder,
                    waited: wait,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Takes the key if nobody holds it.
    async fn try_lead(&self) -> Result<Option<Leadership>, StoreError> {
        let etcd_error = |what: &str| {
            let what = format!("{what} ({} election)", self.name);
            move |source| StoreError::Etcd {
                what,
                source: Box::new(source),
            }
        };
        let lease = self
            .store
            .etcd
            .lease_grant(TTL)
            .await
            .map_err(etcd_error("taking a lease"))?;
        let key = self.key();
        let txn = Txn {
            compare: vec![Compare::Created(key.clone(), 0)],
            success: vec![Op::Put {
                key: key.clone(),
                value: self.me.clone().into_bytes(),
                lease: lease.id,
            }],
            failure: vec![Op::Get(Range::key(key.clone()))],
        };
        let taken = self.store.etcd.txn(&txn).await;
        let created = match taken {
            Ok(t) if t.succeeded => t.revision,
            other => {
                let _ = self.store.etcd.lease_revoke(lease.id).await;
                return other.map(|_| None).map_err(etcd_error("campaigning"));
            }
        };
        let (tell, lost) = watch::channel(false);
        let (store, name) = (self.store.clone(), self.name.clone());
        let renewing = tokio::spawn(async move {
            let every = Duration::from_secs((TTL as u64) / 3).max(Duration::from_secs(1));
            loop {
                tokio::time::sleep(every).await;
                match store.etcd.lease_keep_alive(lease.id).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::warn!("the {name} lease expired: this replica leads no more");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "the {name} lease could not be renewed ({e}): this replica stops leading"
                        );
                        break;
                    }
                }
            }
            let _ = tell.send(true);
        });
        Ok(Some(Leadership {
            lost,
            renewing,
            lease: lease.id,
            store: self.store.clone(),
            held: Compare::Created(key, created),
        }))
    }
}

impl Leadership {
    /// Resolves once this replica leads no more.
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// A comparison that holds only while this leadership does, for transactions that must
    /// not land after it is lost.
    pub fn held(&self) -> Compare {
        self.held.clone()
    }

    /// Gives the leadership up now, so another replica need not wait for the lease to expire.
    pub async fn resign(self) {
        self.renewing.abort();
        let _ = self.store.etcd.lease_revoke(self.lease).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewing.abort();
    }
}
