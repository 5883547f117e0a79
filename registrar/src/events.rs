//! What an engine event means for the registry.

use std::collections::HashMap;

use bollard::models::{EventMessage, EventMessageTypeEnum};

/// What to do after one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Happening {
    /// The container may serve now, or its health changed: look at it,
    /// and hold its entry (up, or down while unhealthy) if it serves.
    Look(String),
    /// Its health changed, status not said (Podman 4): look at it now and
    /// a few times more, since Podman sends the event before it records
    /// the new status.
    Recheck(String),
    /// The container stops running: deregister it at once.
    Leave(String),
    /// The container is gone for good: deregister it and forget it.
    Forget(String),
    /// Nothing to do.
    Ignore,
}

/// Signals that servers take as "reload" or "reopen logs" and survive,
/// as Docker names them in a `kill` event: no reason to deregister.
/// (Podman's `kill` events do not say which signal: they all deregister.)
const SURVIVED_SIGNALS: &[&str] = &[
    "1", "HUP", "SIGHUP", "10", "USR1", "SIGUSR1", "12", "USR2", "SIGUSR2", "28", "WINCH",
    "SIGWINCH",
];

/// Classifies one event of a container labelled `<prefix>.service`; any
/// other event is [`Happening::Ignore`].
///
/// Docker spells a health change as the action `health_status: healthy`;
/// Podman 4 sends a bare `health_status`, which says only that the
/// status changed.
/// Docker's removal is `destroy`, Podman's `remove`.
pub fn classify(event: &EventMessage, prefix: &str) -> Happening {
    if event.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return Happening::Ignore;
    }
    let Some(actor) = &event.actor else {
        return Happening::Ignore;
    };
    let (Some(id), Some(action)) = (actor.id.clone(), event.action.as_deref()) else {
        return Happening::Ignore;
    };
    let empty = HashMap::new();
    let attributes = actor.attributes.as_ref().unwrap_or(&empty);
    if !attributes.contains_key(&format!("{prefix}.service")) {
        return Happening::Ignore;
    }
    let (verb, detail) = match action.split_once(':') {
        Some((verb, detail)) => (verb.trim(), Some(detail.trim())),
        None => (action, None),
    };
    match verb {
        "start" | "unpause" => Happening::Look(id),
        "die" | "stop" | "pause" => Happening::Leave(id),
        "kill" => match attributes.get("signal") {
            Some(signal) if SURVIVED_SIGNALS.contains(&signal.as_str()) => Happening::Ignore,
            _ => Happening::Leave(id),
        },
        "destroy" | "remove" => Happening::Forget(id),
        "health_status" => {
            // Unhealthy marks it down, healthy up again: the look tells which.
            match detail.or_else(|| attributes.get("health_status").map(String::as_str)) {
                Some("unhealthy" | "healthy") => Happening::Look(id),
                None => Happening::Recheck(id),
                Some(_) => Happening::Ignore,
            }
        }
        _ => Happening::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(action: &str, attributes: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    attributes
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn actions_of_docker_and_podman() {
        let labelled = [("gosd.service", "web")];
        let look = Happening::Look("abc".into());
        let leave = Happening::Leave("abc".into());
        for (action, want) in [
            ("start", &look),
            ("unpause", &look),
            ("health_status: healthy", &look),
            ("health_status: unhealthy", &look),
            ("die", &leave),
            ("stop", &leave),
            ("kill", &leave),
            ("pause", &leave),
            ("create", &Happening::Ignore),
            ("exec_start: sh -c true", &Happening::Ignore),
            ("health_status: starting", &Happening::Ignore),
        ] {
            assert_eq!(
                &classify(&event(action, &labelled), "gosd"),
                want,
                "{action}"
            );
        }
        for action in ["destroy", "remove"] {
            assert_eq!(
                classify(&event(action, &labelled), "gosd"),
                Happening::Forget("abc".into())
            );
        }
        let podman_health = [("gosd.service", "web"), ("health_status", "healthy")];
        assert_eq!(
            classify(&event("health_status", &podman_health), "gosd"),
            look
        );
        assert_eq!(
            classify(&event("health_status", &labelled), "gosd"),
            Happening::Recheck("abc".into()),
            "Podman 4's bare health_status: look, and look again"
        );
    }

    #[test]
    fn a_reload_signal_keeps_the_entry_and_unlabelled_containers_are_ignored() {
        let hup = [("gosd.service", "web"), ("signal", "1")];
        assert_eq!(classify(&event("kill", &hup), "gosd"), Happening::Ignore);
        let term = [("gosd.service", "web"), ("signal", "15")];
        assert_eq!(
            classify(&event("kill", &term), "gosd"),
            Happening::Leave("abc".into())
        );
        assert_eq!(classify(&event("start", &[]), "gosd"), Happening::Ignore);
        let other_prefix = [("sd.service", "web")];
        assert_eq!(
            classify(&event("start", &other_prefix), "gosd"),
            Happening::Ignore
        );
        let mut image = event("start", &[("gosd.service", "web")]);
        image.typ = Some(EventMessageTypeEnum::IMAGE);
        assert_eq!(classify(&image, "gosd"), Happening::Ignore);
    }
}
