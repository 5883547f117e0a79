//! The engine side: connect, reconcile, follow the events; on any loss
//! connect again with backoff and reconcile again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as EngineError;
use bollard::models::{ContainerInspectResponse, ContainerSummaryStateEnum};
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use futures_util::StreamExt;
use gosd::InstanceName;

use crate::events::{Happening, classify};
use crate::leases::Leases;
use crate::settings::Settings;
use crate::target::{Decision, Target, decide, display_name, is_registrar_name, short_id};

/// The first retry after the engine was lost, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// When to look at a container again after Podman's bare `health_status`
/// event: it comes before Podman records the new status (a few ms, more
/// on a loaded machine), and the event names no status to go by.
const RECHECKS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

/// How the registrar follows one engine.
pub struct Follower {
    settings: Settings,
    leases: Arc<Leases>,
    /// Containers already warned about (by short id): one warning each.
    warned: Mutex<HashSet<String>>,
}

impl Follower {
    pub fn new(settings: Settings, leases: Arc<Leases>) -> Self {
        Self {
            settings,
            leases,
            warned: Mutex::default(),
        }
    }

    /// Follows the engine forever: each session connects, reconciles and
    /// follows the events until the engine is lost.
    pub async fn run(&self) {
        let mut backoff = FIRST_BACKOFF;
        let mut lost = false;
        loop {
            let failure = self.session(&mut lost, &mut backoff).await;
            if !lost {
                lost = true;
                tracing::warn!(engine = %self.settings.docker_host, error = %failure,
                    "container engine lost; reconnecting with backoff");
            } else {
                tracing::debug!(engine = %self.settings.docker_host, error = %failure, retry_in = ?backoff,
                    "container engine still unreachable");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection: returns why it ended.
    async fn session(&self, lost: &mut bool, backoff: &mut Duration) -> EngineError {
        let docker = match Docker::connect_with_host(&self.settings.docker_host) {
            Ok(d) => d,
            Err(e) => return e,
        };
        let docker = match docker.negotiate_version().await {
            Ok(d) => d,
            Err(e) => return e,
        };
        // Events from the engine's "now" on, read before the reconciliation:
        // whatever happens while it runs is replayed after it, so nothing
        // falls between the two.
        let since = match docker.info().await {
            Ok(info) => info.system_time,
            Err(e) => return e,
        };
        if let Err(e) = self.reconcile(&docker).await {
            return e;
        }
        if std::mem::take(lost) {
            tracing::info!(engine = %self.settings.docker_host, "container engine restored; reconciled");
        }
        *backoff = FIRST_BACKOFF;
        let filters = HashMap::from([("type", vec!["container"])]);
        let mut options = EventsOptionsBuilder::new().filters(&filters);
        if let Some(since) = &since {
            options = options.since(since);
        }
        let mut events = docker.events(Some(options.build()));
        // Re-looks at a container come back through this loop, so that
        // every look and every event is handled in one order.
        let (again, mut look_again) = tokio::sync::mpsc::unbounded_channel::<String>();
        loop {
            let happening = tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        let happening = classify(&event, &self.settings.label_prefix);
                        if happening != Happening::Ignore {
                            tracing::debug!(action = ?event.action, ?happening,
                                delivered_after = ?delivery_lag(&event), "engine event");
                        }
                        happening
                    }
                    Some(Err(e)) => return e,
                    None => break,
                },
                Some(id) = look_again.recv() => Happening::Look(id),
            };
            if let Happening::Recheck(id) = &happening {
                for after in RECHECKS {
                    let (again, id) = (again.clone(), id.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = again.send(id);
                    });
                }
            }
            self.on(&docker, happening).await;
        }
        EngineError::IOError {
            err: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the event stream ended"),
        }
    }

    async fn on(&self, docker: &Docker, happening: Happening) {
        match happening {
            Happening::Ignore => {}
            Happening::Look(id) | Happening::Recheck(id) => self.look_at(docker, &id).await,
            Happening::Leave(id) => {
                if let Some(short) = short_id(&id) {
                    self.leases
                        .release(&short, "its container stopped serving")
                        .await;
                }
            }
            Happening::Forget(id) => {
                if let Some(short) = short_id(&id) {
                    self.leases
                        .release(&short, "its container was removed")
                        .await;
                    lock(&self.warned).remove(&short);
                }
            }
        }
    }

    /// Holds container `id`'s entry if it serves now (up, or down while
    /// unhealthy), releases it if not.
    async fn look_at(&self, docker: &Docker, id: &str) {
        let Some(short) = short_id(id) else { return };
        match docker.inspect_container(id, None).await {
            Ok(c) => match self.decide(&c) {
                Some(target) => self.leases.hold(&short, target).await,
                None => {
                    self.leases
                        .release(&short, "its container does not serve")
                        .await
                }
            },
            // Gone already: nothing to register.
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => self.leases.release(&short, "its container is gone").await,
            // The engine failing: change nothing; if the engine is lost, the
            // reconciliation after the reconnection settles this container.
            Err(e) => {
                tracing::warn!(container = %short, error = %e, "could not inspect the container; left as it was");
            }
        }
    }

    /// The entry to hold for `c`, if any; a bad label is warned about once
    /// per container.
    fn decide(&self, c: &ContainerInspectResponse) -> Option<Target> {
        match decide(c, &self.settings.label_prefix, self.settings.host_ip) {
            Decision::Register(t) => Some(t),
            Decision::Unlabelled | Decision::NotServing(_) => None,
            Decision::Bad(reason) => {
                let short = c.id.as_deref().and_then(short_id).unwrap_or_default();
                if lock(&self.warned).insert(short) {
                    tracing::warn!(container = %display_name(c), "skipped: {reason}");
                }
                None
            }
        }
    }

    /// Makes the registry match the engine: every labelled container that
    /// serves is held; every registrar entry of a container this engine
    /// knows but that does not serve is removed. Entries of containers the
    /// engine does not know (removed, or another engine's) are left to
    /// their leases.
    async fn reconcile(&self, docker: &Docker) -> Result<(), EngineError> {
        let all = docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
            .await?;
        let service_label = format!("{}.service", self.settings.label_prefix);
        let mut known = HashSet::new();
        let mut wanted = HashMap::new();
        for summary in all {
            let Some(id) = summary.id.as_deref() else {
                continue;
            };
            let Some(short) = short_id(id) else { continue };
            known.insert(short.clone());
            let labelled = summary
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(&service_label));
            if !labelled || summary.state != Some(ContainerSummaryStateEnum::RUNNING) {
                continue;
            }
            match docker.inspect_container(id, None).await {
                Ok(c) => {
                    if let Some(target) = self.decide(&c) {
                        wanted.insert(short, target);
                    }
                }
                Err(e) if answered(&e) => {
                    // One container the engine cannot describe (or that
                    // went meanwhile) must not stop the reconciliation.
                    tracing::warn!(container = %short, error = %e, "could not inspect the container; skipped");
                }
                Err(e) => return Err(e),
            }
        }
        self.remove_leftovers(&known, &wanted).await;
        let registered = wanted.len();
        self.leases.replace_all(wanted).await;
        // Once the registry holds what was decided: the line says it is done.
        tracing::info!(
            containers = known.len(),
            registered,
            "reconciled with the engine"
        );
        Ok(())
    }

    /// Removes registrar entries left by an earlier run for containers of
    /// this engine that do not serve now.
    async fn remove_leftovers(&self, known: &HashSet<String>, wanted: &HashMap<String, Target>) {
        let snapshot = match self.leases.driver().snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the registry to remove leftovers; their leases will expire");
                return;
            }
        };
        for entry in snapshot.entries {
            let Some(name) = InstanceName::parse(&entry.field) else {
                continue;
            };
            if !is_registrar_name(&name) || !known.contains(name.id()) {
                continue;
            }
            let wanted_here = wanted
                .get(name.id())
                .is_some_and(|t| t.name == name && t.url == entry.url);
            if !wanted_here {
                let stale = Target {
                    name,
                    url: entry.url,
                    meta: entry.meta,
                    container: entry.field.clone(),
                };
                self.leases
                    .remove(
                        &stale,
                        "its container does not serve (left from an earlier run)",
                    )
                    .await;
            }
        }
    }
}

/// Whether the engine answered (with an error, or with JSON this client
/// cannot read) rather than being unreachable.
fn answered(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::DockerResponseServerError { .. }
            | EngineError::JsonDataError { .. }
            | EngineError::JsonSerdeError { .. }
    )
}

/// How long after the engine stamped it an event arrived (by this host's
/// clock: meaningful for a local engine). Shows where a slow reaction's
/// time went.
fn delivery_lag(event: &bollard::models::EventMessage) -> Option<Duration> {
    let stamped = u64::try_from(event.time_nano?).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    now.checked_sub(Duration::from_nanos(stamped))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
