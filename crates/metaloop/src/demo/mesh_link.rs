//! The demo over a real bus (`--mesh nats://…`): the simulated spine talks to the supervisor
//! exactly as an adapter would — signed CloudEvents on NATS JetStream, through the same
//! ingest pipeline as the daemon — and receives signed directives back on the bus.
//!
//! Virtual time stays in step: a cycle closes only after the supervisor has taken every
//! event published for it, and the next starts only after every directive is delivered and
//! its ack taken.

use crate::runtime::{BoxFuture, Publisher, Runtime};
use anyhow::{Context, Result, anyhow, bail};
use metaloop_core::protocol::{DirectiveMessage, SpineEvent};
use metaloop_core::time::Timestamp;
use metaloop_mesh::mesh::{NatsConfig, Subscription};
use metaloop_mesh::{
    AdapterKeys, EventSigner, IngestConfig, Ingestor, KeyRegistry, Mesh, Message, NatsMesh,
    SizeLimits, SubjectPattern, SubjectPrefix, SubscribeOptions,
};
use metaloop_sim::Spine;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for the bus before calling it stuck.
const PATIENCE: Duration = Duration::from_secs(60);

/// The supervisor's side publishes directives here.
pub struct MeshDirectivePublisher {
    mesh: Arc<NatsMesh>,
    signer: Arc<EventSigner>,
    clock: Arc<std::sync::atomic::AtomicI64>,
    sent: Arc<AtomicU64>,
}

impl Publisher for MeshDirectivePublisher {
    fn publish(&mut self, message: DirectiveMessage) -> BoxFuture<Result<()>> {
        let (mesh, signer, sent) = (self.mesh.clone(), self.signer.clone(), self.sent.clone());
        let now = Timestamp(self.clock.load(Ordering::Relaxed));
        Box::pin(async move {
            let event = metaloop_mesh::directive_event(&message, &signer, now)
                .map_err(|e| anyhow!("signing directive {}: {e}", message.directive_id))?;
            metaloop_mesh::mesh::publish_event(mesh.as_ref(), &event)
                .await
                .map_err(|e| anyhow!("publishing directive {}: {e}", message.directive_id))?;
            sent.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

/// Both ends of the bus for one demo run.
pub struct MeshLink {
    mesh: Arc<NatsMesh>,
    /// The simulated adapters' signers, by source.
    adapters: BTreeMap<String, EventSigner>,
    supervisor: Arc<EventSigner>,
    /// To read directives: the supervisor's public key.
    directive_registry: KeyRegistry,
    /// The supervisor's ingest registry: the adapters' public keys.
    registry: KeyRegistry,
    published: u64,
    processed: Arc<AtomicU64>,
    directives_sent: Arc<AtomicU64>,
    directives_delivered: u64,
    directives: Box<dyn Subscription>,
    consumer: Option<tokio::task::JoinHandle<()>>,
}

fn signer(source: &str) -> EventSigner {
    EventSigner::new(
        source.to_string(),
        metaloop_mesh::keys::generate_signing_key(),
    )
}

impl MeshLink {
    /// Connects to NATS with a stream and subject prefix of this run's own, and makes keys
    /// for the simulated adapters and the supervisor.
    pub async fn connect(url: &str, domains: &[String]) -> Result<MeshLink> {
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).map_err(|e| anyhow!("no randomness: {e}"))?;
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let prefix = SubjectPrefix::new(format!("mldemo{tag}")).map_err(|e| anyhow!("{e}"))?;
        let mesh = Arc::new(
            NatsMesh::connect(NatsConfig {
                url: url.to_string(),
                stream: format!("METALOOP_DEMO_{tag}"),
                subject_prefix: prefix,
                max_ack_pending: 1_000_000,
                ..Default::default()
            })
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?,
        );
        let mut adapters = BTreeMap::new();
        for d in domains {
            let source = format!("urn:spine:{d}");
            adapters.insert(source.clone(), signer(&source));
        }
        // the spine answers directives for unknown domains as itself
        adapters.insert(
            metaloop_sim::SPINE_SOURCE.to_string(),
            signer(metaloop_sim::SPINE_SOURCE),
        );
        let entries: Vec<AdapterKeys> = adapters
            .values()
            .map(|s| AdapterKeys {
                source: s.source().to_string(),
                public_keys: vec![metaloop_mesh::keys::public_key_hex(&s.verifying_key())],
                domains: None,
            })
            .collect();
        let registry = KeyRegistry::from_entries(&entries).map_err(|e| anyhow!("{e}"))?;
        let supervisor = Arc::new(signer("urn:metaloop:supervisor"));
        let directive_registry = KeyRegistry::from_entries(&[AdapterKeys {
            source: supervisor.source().to_string(),
            public_keys: vec![metaloop_mesh::keys::public_key_hex(
                &supervisor.verifying_key(),
            )],
            domains: None,
        }])
        .map_err(|e| anyhow!("{e}"))?;
        let directives = mesh
            .subscribe(
                SubjectPattern::new("meta.directive.*").map_err(|e| anyhow!("{e}"))?,
                SubscribeOptions::durable("spine"),
            )
            .await
            .context("subscribing the simulated spine to directives")?;
        Ok(MeshLink {
            mesh,
            adapters,
            supervisor,
            directive_registry,
            registry,
            published: 0,
            processed: Arc::new(AtomicU64::new(0)),
            directives_sent: Arc::new(AtomicU64::new(0)),
            directives_delivered: 0,
            directives,
            consumer: None,
        })
    }

    /// The supervisor's directive publisher.
    pub fn publisher(&self, clock: Arc<std::sync::atomic::AtomicI64>) -> MeshDirectivePublisher {
        MeshDirectivePublisher {
            mesh: self.mesh.clone(),
            signer: self.supervisor.clone(),
            clock,
            sent: self.directives_sent.clone(),
        }
    }

    /// The supervisor's side: a durable consumer feeding the ingest pipeline.
    pub async fn start_consumer(
        &mut self,
        rt: Runtime,
        clock: Arc<std::sync::atomic::AtomicI64>,
    ) -> Result<()> {
        let mut sub = self
            .mesh
            .subscribe(
                SubjectPattern::all(),
                SubscribeOptions::durable("supervisor"),
            )
            .await
            .context("subscribing the supervisor")?;
        // virtual time runs far ahead of the bus in --fast runs: event times are not judged
        let config = IngestConfig {
            max_event_age_secs: u64::MAX,
            max_clock_skew_secs: u64::MAX,
            ..IngestConfig::default()
        };
        let mut ingestor = Ingestor::new(config, self.registry.clone());
        let processed = self.processed.clone();
        self.consumer = Some(tokio::spawn(async move {
            while let Ok(Some(d)) = sub.next().await {
                if !d.message.subject.is_supervisor_output() {
                    let now = Timestamp(clock.load(Ordering::Relaxed));
                    let outcome =
                        ingestor.ingest(&d.message.payload, d.message.content_type.as_deref(), now);
                    let accepted: Vec<SpineEvent> = outcome
                        .results()
                        .into_iter()
                        .filter_map(|r| match r {
                            Ok(ev) => Some(ev.clone()),
                            Err(rej) => {
                                tracing::warn!(
                                    reason = rej.reason.as_str(),
                                    "event rejected: {}",
                                    rej.message
                                );
                                None
                            }
                        })
                        .collect();
                    let n = outcome.results().len() as u64;
                    if rt
                        .call(move |sup| {
                            for ev in &accepted {
                                if let Err(e) = sup.ingest(ev) {
                                    tracing::warn!(event = %ev.id, error = %e, "event refused");
                                }
                            }
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                    processed.fetch_add(n, Ordering::SeqCst);
                }
                let _ = d.ack().await;
            }
        }));
        Ok(())
    }

    fn signed(&self, ev: &SpineEvent) -> Result<Message> {
        let signer = self
            .adapters
            .get(&ev.source)
            .ok_or_else(|| anyhow!("no adapter key for source {}", ev.source))?;
        let event = signer.spine_event(ev.id.clone(), ev.time, &ev.data);
        Message::for_event(&event).map_err(|e| anyhow!("{e}"))
    }

    /// The spine's side: publishes events, signed by their adapter.
    pub async fn send_events(&mut self, events: &[SpineEvent]) -> Result<()> {
        for ev in events {
            let m = self.signed(ev)?;
            self.mesh
                .publish(m)
                .await
                .map_err(|e| anyhow!("publishing {}: {e}", ev.id))?;
            self.published += 1;
        }
        Ok(())
    }

    /// Waits until the supervisor has taken every event published so far.
    pub async fn wait_processed(&self) -> Result<()> {
        let start = Instant::now();
        while self.processed.load(Ordering::SeqCst) < self.published {
            if start.elapsed() > PATIENCE {
                bail!(
                    "the supervisor took {} of {} events from the bus in {PATIENCE:?}",
                    self.processed.load(Ordering::SeqCst),
                    self.published
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Delivers every directive the supervisor has published to the spine, publishes the
    /// spine's acks, and waits until the supervisor has taken them.
    pub async fn deliver_directives(&mut self, spine: &mut Spine, now: Timestamp) -> Result<()> {
        let start = Instant::now();
        while self.directives_delivered < self.directives_sent.load(Ordering::SeqCst) {
            if start.elapsed() > PATIENCE {
                bail!("directives published but not seen on the bus within {PATIENCE:?}");
            }
            let Some(d) = tokio::time::timeout(Duration::from_millis(200), self.directives.next())
                .await
                .ok()
                .transpose()
                .map_err(|e| anyhow!("reading directives: {e}"))?
                .flatten()
            else {
                continue;
            };
            let subject = d.message.subject.as_str().to_string();
            if subject == "meta.directive.applied" || subject == "meta.directive.refused" {
                let _ = d.ack().await;
                continue;
            }
            let message = metaloop_mesh::read_directive(
                &d.message.payload,
                &self.directive_registry,
                &SizeLimits::default(),
            )
            .map_err(|r| anyhow!("a directive on the bus does not verify: {}", r.message))?;
            let ack = spine.deliver(&message, now);
            let m = self.signed(&ack)?;
            self.mesh
                .publish(m)
                .await
                .map_err(|e| anyhow!("publishing ack: {e}"))?;
            self.published += 1;
            self.directives_delivered += 1;
            let _ = d.ack().await;
        }
        self.wait_processed().await
    }

    /// Stops the consumer and removes this run's stream.
    pub async fn close(mut self) {
        if let Some(c) = self.consumer.take() {
            c.abort();
        }
        let _ = self.mesh.delete_stream().await;
    }
}
