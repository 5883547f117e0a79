//! Which of a service's instances its picks take, and how often, for the
//! table's plain picks and a `Selector`'s alike: up ones only (all of them
//! when none is: fail open), those of the client's zone while it has any,
//! each as often as its weight (`weights`).

use gosd_driver::{Meta, Status};

use crate::weights::{smooth_order, weight_of};

/// The instances (by index into `metas`, all of one service) that take new
/// requests, and whether that is because none does (fail open): the one
/// rule that the picks and the change stream (`Client::watch_service`)
/// share, so that a balancer fed by the stream avoids what a pick avoids.
///
/// Those that are up; a draining or down instance takes none. When none is
/// up, all of them rather than none (Envoy's panic mode): a registry that
/// marks everyone down is more likely wrong than every instance.
pub(crate) fn taking_requests(metas: &[&Meta]) -> (Vec<usize>, bool) {
    let up: Vec<usize> = (0..metas.len())
        .filter(|&i| metas[i].status == Status::Up)
        .collect();
    match up.is_empty() {
        true => ((0..metas.len()).collect(), true),
        false => (up, false),
    }
}

/// A service's pick sequence (see `weights`), over these instances (the
/// service's routes, in order), for a client in `zone`, and whether it
/// fails open. The instances [`taking_requests`] are picked from; a
/// client with a zone picks from those of its zone while it has any.
pub(crate) fn pick_order(instances: &[&Meta], zone: Option<&str>) -> (Vec<u32>, bool) {
    let (mut candidates, fail_open) = taking_requests(instances);
    if let Some(zone) = zone {
        let local: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| instances[i].get("zone") == Some(zone))
            .collect();
        if !local.is_empty() {
            candidates = local;
        }
    }
    let weights: Vec<u32> = candidates
        .iter()
        .map(|&i| weight_of(instances[i]))
        .collect();
    let order = smooth_order(&weights)
        .into_iter()
        .map(|k| candidates[k as usize] as u32)
        .collect();
    (order, fail_open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(status: Status, pairs: &[(&str, &str)]) -> Meta {
        let mut m = Meta::default();
        m.status = status;
        for (k, v) in pairs {
            m.insert(k, v).unwrap();
        }
        m
    }

    #[test]
    fn the_up_ones_or_all_when_none_is() {
        let (up, draining, down) = (
            meta(Status::Up, &[]),
            meta(Status::Draining, &[]),
            meta(Status::Down, &[]),
        );
        assert_eq!(taking_requests(&[&up, &draining, &up]), (vec![0, 2], false));
        assert_eq!(taking_requests(&[&draining, &down]), (vec![0, 1], true));
        assert_eq!(taking_requests(&[]), (vec![], true));
    }

    #[test]
    fn picks_prefer_up_then_the_zone_and_fail_open() {
        let up_a = meta(Status::Up, &[("zone", "a"), ("weight", "300")]);
        let up_b = meta(Status::Up, &[("zone", "b")]);
        let down_a = meta(Status::Down, &[("zone", "a")]);
        let draining = meta(Status::Draining, &[]);
        let plain = Meta::default();
        assert_eq!(
            pick_order(&[&plain, &plain, &plain], None),
            (vec![0, 1, 2], false)
        );
        assert_eq!(pick_order(&[&up_a, &up_b], None), (vec![0, 0, 1, 0], false));
        assert_eq!(pick_order(&[&up_a, &up_b], Some("a")), (vec![0], false));
        assert_eq!(
            pick_order(&[&up_a, &up_b], Some("c")),
            (vec![0, 0, 1, 0], false)
        );
        assert_eq!(
            pick_order(&[&down_a, &up_b], Some("a")),
            (vec![1], false),
            "zone a is down"
        );
        assert_eq!(
            pick_order(&[&down_a, &draining], None),
            (vec![0, 1], true),
            "fail open"
        );
        assert_eq!(
            pick_order(&[&down_a, &draining], Some("a")),
            (vec![0], true)
        );
    }
}
