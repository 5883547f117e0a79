//! Which instances of a service take new requests: the one rule that the
//! picks (`table`) and the change stream (`Client::watch_service`) share,
//! so that a balancer fed by the stream avoids what a pick avoids.

use gosd_driver::{Meta, Status};

/// The instances (by index into `metas`, all of one service) that take new
/// requests, and whether that is because none does (fail open).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn of(status: Status) -> Meta {
        let mut m = Meta::default();
        m.status = status;
        m
    }

    #[test]
    fn the_up_ones_or_all_when_none_is() {
        let (up, draining, down) = (of(Status::Up), of(Status::Draining), of(Status::Down));
        assert_eq!(taking_requests(&[&up, &draining, &up]), (vec![0, 2], false));
        assert_eq!(taking_requests(&[&draining, &down]), (vec![0, 1], true));
        assert_eq!(taking_requests(&[]), (vec![], true));
    }
}
