//! Weights into a pick sequence: nginx's smooth weighted round-robin, run
//! once when a table is built, so that a pick stays one cursor step over
//! the sequence it made.

/// The weight an instance has without a valid `weight` in its metadata.
pub(crate) const DEFAULT_WEIGHT: u32 = 100;

/// The longest sequence made. Weights whose sum (after dividing by their
/// greatest common divisor) is longer are scaled down to fit, which keeps
/// their ratios to within one pick in this many.
const MAX_SEQUENCE: u32 = 4096;

/// An instance's weight from its metadata: a whole number 1–1000, else
/// [`DEFAULT_WEIGHT`] (entries written by Go gosd have none).
pub(crate) fn weight_of(meta: &gosd_driver::Meta) -> u32 {
    meta.get("weight")
        .and_then(|w| w.parse::<u32>().ok())
        .filter(|w| (1..=1000).contains(w))
        .unwrap_or(DEFAULT_WEIGHT)
}

/// The pick sequence for instances of these weights (each ≥ 1): indices
/// into `weights`, each as often as its share, spread as evenly as
/// nginx's smooth weighted round-robin spreads them. Equal weights give
/// `0, 1, 2, …` once each: plain round-robin.
pub(crate) fn smooth_order(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<i64> = weights.iter().map(|&x| i64::from(x / divisor)).collect();
    let total: i64 = w.iter().sum();
    if total > i64::from(MAX_SEQUENCE) {
        for x in &mut w {
            *x = (*x * i64::from(MAX_SEQUENCE) / total).max(1);
        }
    }
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(order: &[u32], n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| order.iter().filter(|&&x| x as usize == i).count())
            .collect()
    }

    #[test]
    fn equal_weights_are_plain_round_robin() {
        assert_eq!(smooth_order(&[100, 100, 100]), [0, 1, 2]);
        assert_eq!(smooth_order(&[7]), [0]);
    }

    #[test]
    fn shares_are_exact_and_spread() {
        let order = smooth_order(&[100, 300]);
        assert_eq!(order.len(), 4);
        assert_eq!(counts(&order, 2), [1, 3]);
        let order = smooth_order(&[5, 1, 1]);
        // nginx's own example: a a b a c a a.
        assert_eq!(order, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn long_sequences_are_scaled_to_fit() {
        let weights: Vec<u32> = (0..50).map(|i| 1000 - i).collect();
        let order = smooth_order(&weights);
        assert!(order.len() <= MAX_SEQUENCE as usize + weights.len());
        assert!(counts(&order, weights.len()).iter().all(|&c| c > 0));
    }

    #[test]
    fn weights_come_from_metadata_or_default() {
        let mut m = gosd_driver::Meta::default();
        assert_eq!(weight_of(&m), 100);
        m.insert("weight", "3").unwrap();
        assert_eq!(weight_of(&m), 3);
        m.insert("weight", "0").unwrap();
        assert_eq!(weight_of(&m), 100);
        m.insert("weight", "1001").unwrap();
        assert_eq!(weight_of(&m), 100);
    }
}
